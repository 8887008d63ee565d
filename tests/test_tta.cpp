// Test-time augmentation (train/Tta.h): the views and weights of airbench's infer_mirror and
// infer_mirror_translate, written out here by indexing, and the flag's refusals.
#include <gtest/gtest.h>

#include "data/InputError.h"
#include "train/Tta.h"

using namespace mgpu;
using train::Tta;

namespace {

// A model that is not mirror-symmetric: logits = a linear map of the flattened image.
struct Linear {
  Linear() : weight(torch::randn({5, 3 * 6 * 7}, at::detail::createCPUGenerator(1))) {}
  torch::Tensor operator()(const torch::Tensor& x) const {
    return torch::matmul(x.flatten(1), weight.t());
  }
  torch::Tensor weight;
};

// x moved by one pixel with reflected borders, by indexing rows and columns: d = -1 shows the
// pixel above-left of each (the first row and column reflected from the second), d = +1 the
// one below-right.
torch::Tensor moved(const torch::Tensor& x, int d) {
  auto index = [&](int64_t n) {
    std::vector<int64_t> i;
    for (int64_t k = 0; k < n; ++k) {
      int64_t from = k + d;
      if (from < 0) from = 1;
      if (from >= n) from = n - 2;
      i.push_back(from);
    }
    return torch::tensor(i);
  };
  return x.index_select(2, index(x.size(2))).index_select(3, index(x.size(3)));
}

}  // namespace

TEST(Tta, TheViewsAndWeightsAreAirbenchs) {
  const Linear f;
  const auto x = torch::randn({4, 3, 6, 7}, at::detail::createCPUGenerator(2));
  const auto forward = [&](const torch::Tensor& v) { return f(v); };
  EXPECT_TRUE(torch::equal(train::tta_logits(forward, x, Tta::kNone), f(x)));
  auto mirror = [&](const torch::Tensor& v) { return 0.5 * f(v) + 0.5 * f(v.flip({-1})); };
  EXPECT_TRUE(torch::equal(train::tta_logits(forward, x, Tta::kMirror), mirror(x)));
  const auto expected =
      0.5 * mirror(x) + 0.5 * torch::stack({mirror(moved(x, -1)), mirror(moved(x, +1))}).mean(0);
  EXPECT_TRUE(torch::equal(train::tta_logits(forward, x, Tta::kMirrorTranslate), expected));
  // The views matter for this model: each level gives other logits.
  EXPECT_FALSE(torch::allclose(mirror(x), f(x)));
  EXPECT_FALSE(torch::allclose(expected, mirror(x)));
}

TEST(Tta, TheLevelsAreNamedAndAnythingElseIsRefusedByFlag) {
  for (const auto* name : {"none", "mirror", "mirror-translate"}) {
    EXPECT_EQ(train::tta_name(train::parse_tta(name)), name);
  }
  try {
    train::parse_tta("sideways", "--tta");
    ADD_FAILURE() << "accepted";
  } catch (const data::InputError& e) {
    EXPECT_STREQ(e.what(), "--tta 'sideways': expected none, mirror or mirror-translate");
  }
}
