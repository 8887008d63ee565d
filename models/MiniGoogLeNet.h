// MiniGoogLeNet (Zhang et al., 2017, as in the PyImageSearch multi-GPU tutorial) and its
// building blocks, in LibTorch's Options / Cloneable / TORCH_MODULE idiom.
#pragma once

#include <torch/torch.h>

#include "models/Dropout.h"

#include <cstdint>

namespace mgpu::models {

/// Conv2d ("same" or "valid" padding, no bias) -> BatchNorm (Keras defaults) -> ReLU.
/// The conv bias is left out: batch norm subtracts the batch mean right after it, so that
/// bias would always receive exactly zero gradient.
struct ConvModuleOptions {
  ConvModuleOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(int64_t, kernel_size);
  TORCH_ARG(int64_t, stride) = 1;
  /// true: Keras "same" (odd kernels, stride 1); false: Keras "valid" (no padding).
  TORCH_ARG(bool, same_padding) = true;
  /// Keras BatchNormalization(epsilon=1e-3, momentum=0.99) is momentum 0.01 in LibTorch terms.
  TORCH_ARG(double, bn_eps) = 1e-3;
  TORCH_ARG(double, bn_momentum) = 0.01;
};

class ConvModuleImpl : public torch::nn::Cloneable<ConvModuleImpl> {
 public:
  explicit ConvModuleImpl(ConvModuleOptions options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);

  ConvModuleOptions options;
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(ConvModule);

/// A 1x1 and a 3x3 conv module side by side, concatenated along channels.
struct InceptionModuleOptions {
  InceptionModuleOptions(int64_t in_channels, int64_t k1x1, int64_t k3x3)
      : in_channels_(in_channels), k1x1_(k1x1), k3x3_(k3x3) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, k1x1);
  TORCH_ARG(int64_t, k3x3);
};

class InceptionModuleImpl : public torch::nn::Cloneable<InceptionModuleImpl> {
 public:
  explicit InceptionModuleImpl(InceptionModuleOptions options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  int64_t out_channels() const { return options.k1x1() + options.k3x3(); }

  InceptionModuleOptions options;
  ConvModule branch1x1{nullptr};
  ConvModule branch3x3{nullptr};
};
TORCH_MODULE(InceptionModule);

/// A 3x3 stride-2 "valid" conv module beside a 3x3 stride-2 max pool, concatenated.
struct DownsampleModuleOptions {
  DownsampleModuleOptions(int64_t in_channels, int64_t k)
      : in_channels_(in_channels), k_(k) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, k);
};

class DownsampleModuleImpl : public torch::nn::Cloneable<DownsampleModuleImpl> {
 public:
  explicit DownsampleModuleImpl(DownsampleModuleOptions options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  int64_t out_channels() const { return options.k() + options.in_channels(); }

  DownsampleModuleOptions options;
  ConvModule conv{nullptr};
  torch::nn::MaxPool2d pool{nullptr};
};
TORCH_MODULE(DownsampleModule);

struct MiniGoogLeNetOptions {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(double, dropout) = 0.5;
};

/// The tutorial's network. Input [B, C, H, W] with H, W >= 28; output logits [B, classes]
/// (softmax is folded into the cross-entropy loss). The tutorial's 7x7 average pool is a
/// global average pool at 32x32 input, so any input size from 28x28 up works.
class MiniGoogLeNetImpl : public torch::nn::Cloneable<MiniGoogLeNetImpl> {
 public:
  explicit MiniGoogLeNetImpl(MiniGoogLeNetOptions options = {});
  void reset() override;
  torch::Tensor forward(torch::Tensor x);

  MiniGoogLeNetOptions options;
  /// conv 96, two inceptions, downsample, four inceptions, downsample, two inceptions.
  torch::nn::Sequential features{nullptr};
  Dropout dropout{nullptr};  // row-keyed (models/Dropout.h)
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(MiniGoogLeNet);

/// Keras initialisation of every submodule: Glorot-uniform kernels, zero biases (batch norm
/// keeps its ones and zeros).
void init_keras(torch::nn::Module& module);

}  // namespace mgpu::models
