// Preprocessing as in the tutorial: subtract the training set's per-pixel mean image.
#pragma once

#include <torch/torch.h>

namespace mgpu::data {

/// Per-pixel mean of uint8 images [N, C, H, W] -> float32 [C, H, W] (summed in float64).
torch::Tensor mean_image(const torch::Tensor& images);

/// uint8 [B, C, H, W] -> float32 [B, C, H, W] minus mean [C, H, W], on the images' device.
torch::Tensor subtract_mean(const torch::Tensor& images, const torch::Tensor& mean);

}  // namespace mgpu::data
