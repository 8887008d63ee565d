// MiniGoogLeNet: conv, inception and downsample modules and the full network.
#include "models/MiniGoogLeNet.h"

#include <fmt/core.h>

#include "data/InputError.h"  // defines: InputError
#include "models/Registry.h"   // defines: ModelShape

namespace mgpu::models {

ConvModuleImpl::ConvModuleImpl(ConvModuleOptions options) : options(std::move(options)) {
  reset();
}

void ConvModuleImpl::reset() {
  const int64_t padding = options.same_padding() ? options.kernel_size() / 2 : 0;
  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels(),
                                                         options.out_channels(),
                                                         options.kernel_size())
                                    .stride(options.stride())
                                    .padding(padding)
                                    .bias(false)));
  bn = register_module(
      "bn", torch::nn::BatchNorm2d(torch::nn::BatchNormOptions(options.out_channels())
                                       .eps(options.bn_eps())
                                       .momentum(options.bn_momentum())));
}

torch::Tensor ConvModuleImpl::forward(const torch::Tensor& x) {
  return torch::relu(bn(conv(x)));
}

InceptionModuleImpl::InceptionModuleImpl(InceptionModuleOptions options)
    : options(std::move(options)) {
  reset();
}

void InceptionModuleImpl::reset() {
  branch1x1 = register_module(
      "branch1x1", ConvModule(ConvModuleOptions(options.in_channels(), options.k1x1(), 1)));
  branch3x3 = register_module(
      "branch3x3", ConvModule(ConvModuleOptions(options.in_channels(), options.k3x3(), 3)));
}

torch::Tensor InceptionModuleImpl::forward(const torch::Tensor& x) {
  return torch::cat({branch1x1(x), branch3x3(x)}, /*dim=*/1);
}

DownsampleModuleImpl::DownsampleModuleImpl(DownsampleModuleOptions options)
    : options(std::move(options)) {
  reset();
}

void DownsampleModuleImpl::reset() {
  conv = register_module("conv", ConvModule(ConvModuleOptions(options.in_channels(), options.k(),
                                                              /*kernel_size=*/3)
                                                .stride(2)
                                                .same_padding(false)));
  pool = register_module("pool", torch::nn::MaxPool2d(
                                     torch::nn::MaxPool2dOptions(/*kernel_size=*/3).stride(2)));
}

torch::Tensor DownsampleModuleImpl::forward(const torch::Tensor& x) {
  return torch::cat({conv(x), pool(x)}, /*dim=*/1);
}

MiniGoogLeNetImpl::MiniGoogLeNetImpl(MiniGoogLeNetOptions options) : options(std::move(options)) {
  reset();
}

void MiniGoogLeNetImpl::reset() {
  features = torch::nn::Sequential();
  int64_t channels = options.in_channels();
  auto add_inception = [&](int64_t k1x1, int64_t k3x3) {
    features->push_back(InceptionModule(InceptionModuleOptions(channels, k1x1, k3x3)));
    channels = k1x1 + k3x3;
  };
  auto add_downsample = [&](int64_t k) {
    features->push_back(DownsampleModule(DownsampleModuleOptions(channels, k)));
    channels += k;
  };
  features->push_back(ConvModule(ConvModuleOptions(channels, 96, /*kernel_size=*/3)));
  channels = 96;
  add_inception(32, 32);
  add_inception(32, 48);
  add_downsample(80);
  add_inception(112, 48);
  add_inception(96, 64);
  add_inception(80, 80);
  add_inception(48, 96);
  add_downsample(96);
  add_inception(176, 160);
  add_inception(176, 160);
  features = register_module("features", features);
  dropout = register_module("dropout", Dropout(options.dropout()));
  classifier = register_module("classifier", torch::nn::Linear(channels, options.num_classes()));
  init_keras(*this);
}

torch::Tensor MiniGoogLeNetImpl::forward(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == options.in_channels() && x.size(2) >= 28 &&
                  x.size(3) >= 28,
              "MiniGoogLeNet expects [B, ", options.in_channels(),
              ", H>=28, W>=28] input, got ", x.sizes());
  x = features->forward(x);
  x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);  // [B, 336]
  return classifier(dropout(x));                          // [B, classes] logits
}

void init_keras(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& child : module.modules(/*include_self=*/false)) {
    if (auto* conv = child->as<torch::nn::Conv2d>()) {
      torch::nn::init::xavier_uniform_(conv->weight);
      if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
    } else if (auto* linear = child->as<torch::nn::Linear>()) {
      torch::nn::init::xavier_uniform_(linear->weight);
      torch::nn::init::zeros_(linear->bias);
    }
  }
}

// The registry's factory (models/Models.def).
torch::nn::AnyModule make_minigooglenet(const ModelShape& shape) {
  if (shape.height < 28 || shape.width < 28) {
    throw data::InputError(fmt::format(
        "minigooglenet needs images of at least 28x28 pixels, got {}x{}", shape.height,
        shape.width));
  }
  return torch::nn::AnyModule(MiniGoogLeNet(
      MiniGoogLeNetOptions().in_channels(shape.channels).num_classes(shape.classes)));
}

}  // namespace mgpu::models
