// Mean image and mean subtraction.
#include "data/Preprocess.h"

namespace mgpu::data {

torch::Tensor mean_image(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(0) > 0, "mean_image expects [N, C, H, W], got ",
              images.sizes());
  // Chunks keep the float64 temporaries small (50,000 CIFAR images would need 1.2 GB at once).
  constexpr int64_t kChunk = 4096;
  auto sum = torch::zeros(images.sizes().slice(1), images.options().dtype(torch::kFloat64));
  for (int64_t start = 0; start < images.size(0); start += kChunk) {
    const int64_t len = std::min(kChunk, images.size(0) - start);
    sum += images.narrow(0, start, len).to(torch::kFloat64).sum(0);
  }
  return (sum / static_cast<double>(images.size(0))).to(torch::kFloat32);
}

torch::Tensor subtract_mean(const torch::Tensor& images, const torch::Tensor& mean) {
  return images.to(torch::kFloat32) - mean;
}

}  // namespace mgpu::data
