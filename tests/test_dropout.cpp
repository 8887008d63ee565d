// Row-keyed dropout (models/Dropout.h): an image's mask is a function of the seed, its row key
// and the layer, so that the masks do not depend on how a batch is split.
#include <gtest/gtest.h>

#include "models/Dropout.h"

using mgpu::models::Dropout;
using mgpu::models::RowKeys;

namespace {

torch::Tensor keys(int64_t from, int64_t to) { return torch::arange(from, to, torch::kInt64); }

torch::Tensor dropped(Dropout& d, const torch::Tensor& x, const torch::Tensor& k, uint64_t seed) {
  const RowKeys::Scope scope(k, seed);
  return d->forward(x);
}

}  // namespace

TEST(RowKeyedDropout, AnImagesMaskDependsOnlyOnTheSeedAndItsKey) {
  Dropout d(0.5);
  const auto x = torch::ones({4, 300});
  const auto whole = dropped(d, x, keys(100, 104), 7);
  // Split in two, the rows get the same masks.
  const auto split = torch::cat({dropped(d, x.narrow(0, 0, 2), keys(100, 102), 7),
                                 dropped(d, x.narrow(0, 2, 2), keys(102, 104), 7)});
  EXPECT_TRUE(torch::equal(whole, split));
  // Row 3 alone, at its key, too; at another key, or with another seed, another mask.
  EXPECT_TRUE(torch::equal(dropped(d, x.narrow(0, 3, 1), keys(103, 104), 7), whole.narrow(0, 3, 1)));
  EXPECT_FALSE(torch::equal(dropped(d, x.narrow(0, 3, 1), keys(104, 105), 7), whole.narrow(0, 3, 1)));
  EXPECT_FALSE(torch::equal(dropped(d, x, keys(100, 104), 8), whole));
  // Inverted dropout: zeros and 1 / (1 - p), about half of each.
  EXPECT_TRUE(torch::all(whole.eq(0) | whole.eq(2)).item<bool>());
  EXPECT_NEAR(whole.eq(0).to(torch::kDouble).mean().item<double>(), 0.5, 0.05);
}

TEST(RowKeyedDropout, EachLayerOfAForwardPassHasItsOwnMasksAndEvalModeNone) {
  Dropout d(0.3);
  const auto x = torch::ones({2, 1000});
  {
    const RowKeys::Scope scope(keys(0, 2), 1);
    const auto first = d->forward(x), second = d->forward(x);  // two layers of one pass
    EXPECT_FALSE(torch::equal(first, second));
    EXPECT_NEAR(first.eq(0).to(torch::kDouble).mean().item<double>(), 0.3, 0.05);
  }
  d->eval();
  EXPECT_TRUE(torch::equal(dropped(d, x, keys(0, 2), 1), x));
  d->train();
  // Outside a scope it draws from LibTorch's generator, as torch::nn::Dropout does.
  torch::manual_seed(3);
  const auto a = d->forward(x);
  torch::manual_seed(3);
  EXPECT_TRUE(torch::equal(a, torch::nn::Dropout(0.3)->forward(x)));
}
