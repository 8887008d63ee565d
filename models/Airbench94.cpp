// airbench94 (Keller Jordan, 2024, arXiv 2404.00498; github KellerJordan/cifar10-airbench,
// legacy/airbench94.py): a whitening convolution initialised from the data, three conv groups
// (conv, max pool, batch norm, GELU, conv, batch norm, GELU), a max pool and a linear head.
// Its recipe (models/Models.def) trains it to about 94% on CIFAR-10 in 9.9 epochs.
#include <fmt/core.h>
#include <torch/torch.h>

#include <cmath>

#include "data/InputError.h"  // defines: InputError
#include "models/Registry.h"  // defines: ModelShape

namespace mgpu::models {

namespace {

/// airbench's convolution: no bias unless asked (then zero), and the first in_channels filters
/// the identity (dirac), the rest PyTorch's default initialisation.
torch::nn::Conv2d identity_conv(int64_t in, int64_t out, int64_t kernel, bool same, bool bias) {
  // "same" padding of an odd kernel: kernel / 2 on each side.
  torch::nn::Conv2d conv(
      torch::nn::Conv2dOptions(in, out, kernel).padding(same ? kernel / 2 : 0).bias(bias));
  torch::NoGradGuard no_grad;
  if (bias) conv->bias.zero_();
  torch::nn::init::dirac_(conv->weight.narrow(0, 0, std::min(in, out)));
  return conv;
}

/// airbench's batch norm: eps 1e-12, running statistics 0.6 old + 0.4 new, the scale fixed at
/// 1 (not trained), the shift trained.
torch::nn::BatchNorm2d shift_only_norm(int64_t channels, double momentum) {
  torch::nn::BatchNorm2d norm(
      torch::nn::BatchNorm2dOptions(channels).eps(1e-12).momentum(1.0 - momentum));
  norm->weight.requires_grad_(false);
  return norm;
}

}  // namespace

struct Airbench94Options {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(std::vector<int64_t>, widths) = std::vector<int64_t>{64, 256, 256};
  TORCH_ARG(double, batchnorm_momentum) = 0.6;  // airbench's: the old statistics' share
  TORCH_ARG(double, scaling) = 1.0 / 9;         // the logits' factor
};

/// conv, 2x2 max pool, batch norm, GELU, conv, batch norm, GELU.
class ConvGroupImpl : public torch::nn::Cloneable<ConvGroupImpl> {
 public:
  ConvGroupImpl(int64_t in, int64_t out, double momentum)
      : in_(in), out_(out), momentum_(momentum) {
    reset();
  }
  void reset() override {
    conv1 = register_module("conv1", identity_conv(in_, out_, 3, true, false));
    norm1 = register_module("norm1", shift_only_norm(out_, momentum_));
    conv2 = register_module("conv2", identity_conv(out_, out_, 3, true, false));
    norm2 = register_module("norm2", shift_only_norm(out_, momentum_));
  }
  torch::Tensor forward(const torch::Tensor& input) {
    auto x = torch::max_pool2d(conv1(input), 2);
    x = torch::gelu(norm1(x));
    return torch::gelu(norm2(conv2(x)));
  }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d norm1{nullptr}, norm2{nullptr};

 private:
  int64_t in_, out_;
  double momentum_;
};
TORCH_MODULE(ConvGroup);

/// Input [B, C, H, W] with H, W >= 9; output logits [B, classes]. The whitening convolution
/// (2x2, 2 x C x 4 filters: each patch direction and its negative) is frozen: set by
/// init_airbench94 from the data, its bias trained (the recipe: the first 3 epochs only).
class Airbench94Impl : public torch::nn::Cloneable<Airbench94Impl> {
 public:
  explicit Airbench94Impl(Airbench94Options options) : options(std::move(options)) { reset(); }
  void reset() override {
    const auto& w = options.widths();
    const int64_t whiten_width = 2 * options.in_channels() * 2 * 2;
    whiten = register_module("whiten",
                             identity_conv(options.in_channels(), whiten_width, 2, false, true));
    whiten->weight.requires_grad_(false);
    group1 = register_module("group1", ConvGroup(whiten_width, w[0], options.batchnorm_momentum()));
    group2 = register_module("group2", ConvGroup(w[0], w[1], options.batchnorm_momentum()));
    group3 = register_module("group3", ConvGroup(w[1], w[2], options.batchnorm_momentum()));
    head = register_module(
        "head",
        torch::nn::Linear(torch::nn::LinearOptions(w[2], options.num_classes()).bias(false)));
  }
  torch::Tensor forward(const torch::Tensor& input) {
    auto x = torch::gelu(whiten(input));
    x = group3(group2(group1(x)));
    // airbench's 3x3 max pool of the 3x3 map that 32x32 images leave: the global maximum.
    x = std::get<0>(x.flatten(2).max(2));
    return head(x) * options.scaling();
  }
  Airbench94Options options;
  torch::nn::Conv2d whiten{nullptr};
  ConvGroup group1{nullptr}, group2{nullptr}, group3{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(Airbench94);

torch::nn::AnyModule make_airbench94(const ModelShape& shape) {
  if (shape.height < 9 || shape.width < 9) {
    throw data::InputError(fmt::format("airbench94 needs images of at least 9x9 pixels, got {}x{}",
                                       shape.height, shape.width));
  }
  return torch::nn::AnyModule(
      Airbench94(Airbench94Options().in_channels(shape.channels).num_classes(shape.classes)));
}

// airbench's whitening: the filters are the eigenvectors of the covariance of the images' 2x2
// patches, each divided by the square root of its eigenvalue (plus eps), and their negatives.
// eps is airbench's 5e-4 relative to the mean variance of a patch value (airbench's images
// are normalised to about 1; mgpu's only have the mean image subtracted).
void init_airbench94(torch::nn::AnyModule& model, const torch::Tensor& images) {
  auto net = model.get<Airbench94>();
  torch::NoGradGuard no_grad;
  const auto& weight = net->whiten->weight;  // [2 x C x 4, C, 2, 2]
  const int64_t c = images.size(1), h = weight.size(2), w = weight.size(3);
  const auto patches = images.to(torch::kFloat32)
                           .unfold(2, h, 1)
                           .unfold(3, w, 1)
                           .transpose(1, 3)
                           .reshape({-1, c * h * w});
  const auto covariance = patches.t().matmul(patches) / static_cast<double>(patches.size(0));
  const auto [values, vectors] = torch::linalg_eigh(covariance, "U");
  const double eps = 5e-4 * covariance.diagonal().mean().item<double>();
  const auto directions = vectors.t().reshape({c * h * w, c, h, w}).flip(0);
  const auto scaled = directions / (values.flip(0).view({-1, 1, 1, 1}) + eps).sqrt();
  weight.copy_(torch::cat({scaled, -scaled}));
}

}  // namespace mgpu::models
