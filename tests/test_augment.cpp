// Augmentation: identities, exact shifts with edge fill, bounds, seeding; mean subtraction.
#include <gtest/gtest.h>

#include "data/Augment.h"
#include "data/Preprocess.h"

using namespace mgpu::data;

namespace {

torch::Tensor ints(std::vector<int64_t> v) { return torch::tensor(v, torch::kInt64); }
torch::Tensor bools(std::vector<int64_t> v) { return torch::tensor(v, torch::kInt64).to(torch::kBool); }

}  // namespace

TEST(Augment, ZeroShiftWithoutFlipIsTheIdentity) {
  auto x = torch::randn({3, 2, 8, 9});
  EXPECT_TRUE(torch::equal(shift_and_flip(x, ints({0, 0, 0}), ints({0, 0, 0}), bools({0, 0, 0})), x));
}

TEST(Augment, FlipIsAMirrorAndTwoFlipsAreTheIdentity) {
  auto x = torch::randn({2, 3, 6, 7});
  auto zero = ints({0, 0});
  auto once = shift_and_flip(x, zero, zero, bools({1, 0}));
  EXPECT_TRUE(torch::equal(once[0], x[0].flip({2})));
  EXPECT_TRUE(torch::equal(once[1], x[1]));
  EXPECT_TRUE(torch::equal(shift_and_flip(once, zero, zero, bools({1, 0})), x));
}

TEST(Augment, ShiftMovesContentByKAndRepeatsTheEdge) {
  auto x = torch::arange(2 * 5 * 6, torch::kFloat32).view({1, 2, 5, 6});
  const int64_t k = 2;
  auto right = shift_and_flip(x, ints({k}), ints({0}), bools({0}));
  // Content moved right by k...
  EXPECT_TRUE(torch::equal(right.narrow(3, k, 6 - k), x.narrow(3, 0, 6 - k)));
  // ...and the uncovered left columns repeat the original left edge.
  for (int64_t c = 0; c < k; ++c) {
    EXPECT_TRUE(torch::equal(right.select(3, c), x.select(3, 0)));
  }
  auto up = shift_and_flip(x, ints({0}), ints({-k}), bools({0}));
  EXPECT_TRUE(torch::equal(up.narrow(2, 0, 5 - k), x.narrow(2, k, 5 - k)));
  for (int64_t r = 5 - k; r < 5; ++r) {
    EXPECT_TRUE(torch::equal(up.select(2, r), x.select(2, 4)));
  }
}

TEST(Augment, EachImageGetsItsOwnOffset) {
  auto x = torch::arange(2 * 4 * 4, torch::kFloat32).view({2, 1, 4, 4});
  auto out = shift_and_flip(x, ints({1, 0}), ints({0, 1}), bools({0, 0}));
  EXPECT_TRUE(torch::equal(out[0].narrow(2, 1, 3), x[0].narrow(2, 0, 3)));
  EXPECT_TRUE(torch::equal(out[1].narrow(1, 1, 3), x[1].narrow(1, 0, 3)));
}

TEST(Augment, OffsetsStayWithinTenPercentAndCoverTheRange) {
  Augmenter augment({}, /*seed=*/7);
  const auto d = augment.draw(20000, /*height=*/32, /*width=*/28);
  // 10% of 28 is 2.8 and of 32 is 3.2: whole-pixel offsets up to 3 either way.
  EXPECT_EQ(d.dx.abs().max().item<int64_t>(), 3);
  EXPECT_EQ(d.dy.abs().max().item<int64_t>(), 3);
  EXPECT_EQ(d.dx.min().item<int64_t>(), -3);
  // |dx| = 3 only for |u| in [2.5, 2.8]: rarer than the inner offsets.
  const double edge = d.dx.eq(3).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(edge, 0.3 / 5.6, 0.01);
  EXPECT_NEAR(d.flip.to(torch::kFloat64).mean().item<double>(), 0.5, 0.02);
}

TEST(Augment, SameSeedSameResultOtherSeedOtherResult) {
  auto x = torch::randn({16, 3, 32, 32});
  Augmenter a({}, 1), b({}, 1), c({}, 2);
  auto ya = a(x);
  EXPECT_TRUE(torch::equal(ya, b(x)));
  EXPECT_FALSE(torch::equal(ya, c(x)));
  EXPECT_FALSE(torch::equal(ya, a(x)));  // the stream moves on
  EXPECT_EQ(ya.sizes(), x.sizes());
}

TEST(Augment, NoShiftOptionsLeaveImagesAlone) {
  AugmentOptions none;
  none.width_shift = none.height_shift = 0;
  none.horizontal_flip = false;
  Augmenter augment(none, 3);
  auto x = torch::randn({4, 1, 28, 28});
  EXPECT_TRUE(torch::equal(augment(x), x));
}

TEST(Preprocess, MeanImageIsPerPixel) {
  auto images = torch::tensor({0, 10, 20, 30}, torch::kUInt8).view({2, 1, 1, 2});
  auto mean = mean_image(images);
  EXPECT_EQ(mean.sizes().vec(), (std::vector<int64_t>{1, 1, 2}));
  EXPECT_FLOAT_EQ(mean[0][0][0].item<float>(), 10.f);
  EXPECT_FLOAT_EQ(mean[0][0][1].item<float>(), 20.f);
  auto centred = subtract_mean(images, mean);
  EXPECT_EQ(centred.dtype(), torch::kFloat32);
  EXPECT_FLOAT_EQ(centred[1][0][0][1].item<float>(), 10.f);
  EXPECT_FLOAT_EQ(centred.sum().item<float>(), 0.f);
}

TEST(Preprocess, MeanImageOverManyChunks) {
  auto images = torch::randint(0, 256, {9000, 1, 2, 2}, torch::kUInt8);
  auto expected = images.to(torch::kFloat64).mean(0).to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(mean_image(images), expected));
}

TEST(Augment, AReflectedShiftIsACropOfTheReflectPaddedImage) {
  // airbench's translate: pad by r with reflection (PyTorch's "reflect": the edge not repeated),
  // take the r x r-shifted window. Every shift in [-2, 2]^2, with and without a flip.
  const int64_t r = 2, H = 6, W = 7;
  auto x = torch::randn({1, 3, H, W});
  const auto padded = torch::nn::functional::pad(
      x, torch::nn::functional::PadFuncOptions({r, r, r, r}).mode(torch::kReflect));
  for (int64_t dy = -r; dy <= r; ++dy) {
    for (int64_t dx = -r; dx <= r; ++dx) {
      for (int64_t f = 0; f <= 1; ++f) {
        // Shifted right by dx: output column c reads padded column c - dx + r.
        auto crop = padded.narrow(2, r - dy, H).narrow(3, r - dx, W);
        if (f) crop = crop.flip({3});
        EXPECT_TRUE(torch::equal(
            shift_and_flip(x, ints({dx}), ints({dy}), bools({f}), Fill::kReflect), crop))
            << dx << "," << dy << " flip " << f;
      }
    }
  }
  // The nearest fill differs from it wherever a border is uncovered.
  EXPECT_FALSE(torch::equal(shift_and_flip(x, ints({2}), ints({0}), bools({0})),
                            shift_and_flip(x, ints({2}), ints({0}), bools({0}), Fill::kReflect)));
}

TEST(Augment, TranslateShiftsAreUniformWholePixelsWithinTheRange) {
  auto g = at::detail::createCPUGenerator(5);
  const auto s = uniform_shifts(20000, 2, g);
  EXPECT_EQ(s.min().item<int64_t>(), -2);
  EXPECT_EQ(s.max().item<int64_t>(), 2);
  for (int64_t v = -2; v <= 2; ++v) {  // each of the 5 values about a fifth of the time
    EXPECT_NEAR(s.eq(v).to(torch::kFloat64).mean().item<double>(), 0.2, 0.02) << v;
  }
}

TEST(Augment, AlternatingFlipsMirrorEachImageInEveryOtherEpoch) {
  // Each image: flipped in even epochs or odd ones, half of the images each way, the same
  // choice whatever the epoch's order; another seed chooses differently.
  const int64_t n = 1000;
  const auto order = torch::randperm(n, torch::kInt64);
  const auto identity = torch::arange(n, torch::kInt64);
  const auto even = alternating_flips(7, n, identity, 0);
  EXPECT_TRUE(torch::equal(alternating_flips(7, n, identity, 2), even));
  EXPECT_TRUE(torch::equal(alternating_flips(7, n, identity, 1), even.logical_not()));
  EXPECT_TRUE(torch::equal(alternating_flips(7, n, order, 3), even.logical_not().index_select(0, order)));
  EXPECT_NEAR(even.to(torch::kFloat64).mean().item<double>(), 0.5, 0.06);
  EXPECT_FALSE(torch::equal(alternating_flips(8, n, identity, 0), even));
}
