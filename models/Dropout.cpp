// Row-keyed dropout: a counter-based hash of (seed, row key, layer, feature) gives each mask
// entry, with integer tensor operations on the rows' device (no host round trip, nothing a
// CUDA graph cannot capture).
#include "models/Dropout.h"

namespace mgpu::models {

namespace {

thread_local const RowKeys* innermost = nullptr;

constexpr int64_t kLow32 = 0xFFFFFFFFLL;

// A 32-bit integer hash (lowbias32, Chris Wellons) of int64 tensors holding values below 2^32:
// products wrap modulo 2^64, whose low 32 bits are the 32-bit products.
torch::Tensor hash32(torch::Tensor x) {
  x = x.bitwise_xor(x.bitwise_right_shift(16));
  x = x.mul(0x7feb352dLL).bitwise_and(kLow32);
  x = x.bitwise_xor(x.bitwise_right_shift(15));
  x = x.mul(0x846ca68bLL).bitwise_and(kLow32);
  return x.bitwise_xor(x.bitwise_right_shift(16));
}

}  // namespace

RowKeys::Scope::Scope(torch::Tensor keys, uint64_t seed) : outer_(innermost) {
  innermost = new RowKeys(std::move(keys), seed);
}

RowKeys::Scope::~Scope() {
  delete innermost;
  innermost = outer_;
}

const RowKeys* RowKeys::current() { return innermost; }

torch::Tensor RowKeys::uniform(int64_t features, const torch::TensorOptions& options) const {
  const int64_t layer = layers_++;
  const auto keys = keys_.to(torch::kInt64).view({-1, 1});  // [b, 1]
  const auto ints = torch::TensorOptions().dtype(torch::kInt64).device(keys_.device());
  // Column c of layer l: the same for every row; the seed enters through it.
  auto column = hash32(torch::arange(features, ints).add(layer << 24).bitwise_xor(
      static_cast<int64_t>(seed_ & kLow32)));
  column = hash32(column.bitwise_xor(static_cast<int64_t>((seed_ >> 32) & kLow32)));
  auto x = hash32(column.view({1, -1}).bitwise_xor(keys.bitwise_and(kLow32)));  // [b, features]
  x = hash32(x.bitwise_xor(keys.bitwise_right_shift(32).bitwise_and(kLow32)));
  return x.bitwise_right_shift(8).to(options.dtype()).mul(1.0 / (1 << 24));  // 24 bits
}

DropoutImpl::DropoutImpl(DropoutOptions options_) : options(options_) {
  TORCH_CHECK(options.p() >= 0 && options.p() < 1, "dropout probability must be in [0, 1), got ",
              options.p());
}

torch::Tensor DropoutImpl::forward(torch::Tensor x) {
  if (!is_training() || options.p() == 0) return x;
  const RowKeys* keys = RowKeys::current();
  if (!keys) return torch::dropout(x, options.p(), /*train=*/true);
  const int64_t rows = x.size(0);
  const auto u = keys->uniform(x.numel() / std::max<int64_t>(rows, 1),
                               x.options().dtype(torch::kFloat)).view(x.sizes());
  const auto keep = u.ge(options.p()).to(x.dtype());
  return x * keep * (1.0 / (1.0 - options.p()));
}

}  // namespace mgpu::models
