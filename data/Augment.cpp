// Shift-and-flip augmentation by two gathers per batch.
#include "data/Augment.h"

namespace mgpu::data {

torch::Tensor shift_and_flip(const torch::Tensor& batch, const torch::Tensor& dx,
                             const torch::Tensor& dy, const torch::Tensor& flip, Fill fill) {
  const int64_t B = batch.size(0), C = batch.size(1), H = batch.size(2), W = batch.size(3);
  auto idx = torch::TensorOptions().dtype(torch::kInt64).device(batch.device());
  auto dx_d = dx.to(idx).view({B, 1});
  auto dy_d = dy.to(idx).view({B, 1});
  auto flip_d = flip.to(batch.device()).view({B, 1});
  auto rows = torch::arange(H, idx).view({1, H});
  auto cols = torch::arange(W, idx).view({1, W});
  // Output pixel x reads source column x - dx (clamped: edge fill; or mirrored at the edge:
  // -1 reads 1, W reads W - 2); a flip reads the mirror.
  auto inside = [fill](torch::Tensor i, int64_t n) {
    if (fill == Fill::kReflect) i = (n - 1) - ((n - 1) - i.abs()).abs();
    return i.clamp(0, n - 1);
  };
  auto src_rows = inside(rows - dy_d, H);                                       // [B, H]
  auto src_cols = inside(torch::where(flip_d, W - 1 - cols, cols) - dx_d, W);  // [B, W]
  auto out = batch.gather(2, src_rows.view({B, 1, H, 1}).expand({B, C, H, W}));
  return out.gather(3, src_cols.view({B, 1, 1, W}).expand({B, C, H, W}));
}

torch::Tensor alternating_flips(uint64_t seed, int64_t images, const torch::Tensor& order,
                                int64_t epoch) {
  auto once = at::detail::createCPUGenerator(seed);
  const auto flipped = torch::rand({images}, once).lt(0.5).index_select(0, order);
  return epoch % 2 == 1 ? flipped.logical_not() : flipped;
}

torch::Tensor uniform_shifts(int64_t n, int64_t range, torch::Generator& generator) {
  return torch::randint(-range, range + 1, {n}, generator);
}

Augmenter::Augmenter(AugmentOptions options, uint64_t seed)
    : options_(options), generator_(at::detail::createCPUGenerator(seed)) {}

Augmenter::Draw Augmenter::draw(const AugmentOptions& options, torch::Generator& generator,
                                int64_t batch, int64_t height, int64_t width) {
  auto uniform = [&](double range) {  // round(U(-range, range)), int64 [batch]
    return ((torch::rand({batch}, generator) * 2 - 1) * range).round().to(torch::kInt64);
  };
  Draw d;
  d.dx = uniform(options.width_shift * static_cast<double>(width));
  d.dy = uniform(options.height_shift * static_cast<double>(height));
  d.flip = options.horizontal_flip ? torch::rand({batch}, generator) < 0.5
                                   : torch::zeros({batch}, torch::kBool);
  return d;
}

Augmenter::Draw Augmenter::draw(int64_t batch, int64_t height, int64_t width) {
  return draw(options_, generator_, batch, height, width);
}

torch::Tensor Augmenter::operator()(const torch::Tensor& batch) {
  const Draw d = draw(batch.size(0), batch.size(2), batch.size(3));
  return shift_and_flip(batch, d.dx, d.dy, d.flip);
}

}  // namespace mgpu::data
