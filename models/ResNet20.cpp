// ResNet-20 for CIFAR-10 (He et al., 2016, section 4.2): a 3x3 conv of 16 channels, three
// stages of three basic blocks (16, 32 and 64 channels; the second and third halve the image),
// global average pooling and a linear classifier; 269,722 parameters at 3x32x32 and 10 classes.
// Names follow the usual PyTorch port (akamaster/pytorch_resnet_cifar10), so that exported
// weights load into it. This one file and its line in models/Models.def are the whole model.
#include <torch/torch.h>

#include "models/Registry.h"  // defines: ModelShape

namespace mgpu::models {
namespace {

torch::nn::Conv2d conv3x3(int64_t in_planes, int64_t planes, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in_planes, planes, /*kernel_size=*/3)
                               .stride(stride)
                               .padding(1)
                               .bias(false));
}

struct BasicBlockOptions {
  BasicBlockOptions(int64_t in_planes, int64_t planes) : in_planes_(in_planes), planes_(planes) {}
  TORCH_ARG(int64_t, in_planes);
  TORCH_ARG(int64_t, planes);
  TORCH_ARG(int64_t, stride) = 1;
};

/// conv 3x3, batch norm, ReLU, conv 3x3, batch norm, plus the shortcut, ReLU. Where the block
/// changes the shape, the shortcut is the paper's option A: every stride-th pixel, with zero
/// channels padded on both sides, so it has no parameters.
class BasicBlockImpl : public torch::nn::Cloneable<BasicBlockImpl> {
 public:
  explicit BasicBlockImpl(BasicBlockOptions options) : options(std::move(options)) { reset(); }

  void reset() override {
    conv1 =
        register_module("conv1", conv3x3(options.in_planes(), options.planes(), options.stride()));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(options.planes()));
    conv2 = register_module("conv2", conv3x3(options.planes(), options.planes(), 1));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(options.planes()));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto out = torch::relu(bn1(conv1(x)));
    out = bn2(conv2(out));
    return torch::relu(out + shortcut(x));
  }

  BasicBlockOptions options;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};

 private:
  torch::Tensor shortcut(const torch::Tensor& x) const {
    const int64_t stride = options.stride(), added = options.planes() - options.in_planes();
    if (stride == 1 && added == 0) return x;
    const auto sampled =
        x.slice(/*dim=*/2, 0, x.size(2), stride).slice(/*dim=*/3, 0, x.size(3), stride);
    // [B, in, H/s, W/s] -> [B, planes, H/s, W/s]: zeros before and after the channels.
    return torch::constant_pad_nd(sampled, {0, 0, 0, 0, added / 2, added - added / 2});
  }
};
TORCH_MODULE(BasicBlock);

struct ResNet20Options {
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 10;
  TORCH_ARG(int64_t, blocks_per_stage) = 3;  // 6n + 2 layers: n = 3 is ResNet-20
};

class ResNet20Impl : public torch::nn::Cloneable<ResNet20Impl> {
 public:
  explicit ResNet20Impl(ResNet20Options options) : options(std::move(options)) { reset(); }

  void reset() override {
    conv1 = register_module("conv1", conv3x3(options.in_channels(), 16, 1));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(16));
    layer1 = register_module("layer1", stage(16, 16, /*stride=*/1));
    layer2 = register_module("layer2", stage(16, 32, /*stride=*/2));
    layer3 = register_module("layer3", stage(32, 64, /*stride=*/2));
    linear = register_module("linear", torch::nn::Linear(64, options.num_classes()));
    // The port's initialisation: He-normal conv and linear weights; PyTorch's defaults else.
    torch::NoGradGuard no_grad;
    for (auto& child : modules(/*include_self=*/false)) {
      if (auto* conv = child->as<torch::nn::Conv2d>())
        torch::nn::init::kaiming_normal_(conv->weight);
      if (auto* fc = child->as<torch::nn::Linear>()) torch::nn::init::kaiming_normal_(fc->weight);
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == options.in_channels(), "ResNet-20 expects [B, ",
                options.in_channels(), ", H, W] input, got ", x.sizes());
    x = torch::relu(bn1(conv1(x)));                            // [B, 16, H, W]
    x = layer3->forward(layer2->forward(layer1->forward(x)));  // [B, 64, H/4, W/4]
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);      // [B, 64]
    return linear(x);                                          // [B, classes] logits
  }

  ResNet20Options options;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr};
  torch::nn::Linear linear{nullptr};

 private:
  torch::nn::Sequential stage(int64_t in_planes, int64_t planes, int64_t stride) const {
    torch::nn::Sequential blocks;
    for (int64_t i = 0; i < options.blocks_per_stage(); ++i) {
      blocks->push_back(BasicBlock(
          BasicBlockOptions(i == 0 ? in_planes : planes, planes).stride(i == 0 ? stride : 1)));
    }
    return blocks;
  }
};
TORCH_MODULE(ResNet20);

}  // namespace

// The registry's factory (models/Models.def). Any image size works (global average pooling).
torch::nn::AnyModule make_resnet20(const ModelShape& shape) {
  return torch::nn::AnyModule(
      ResNet20(ResNet20Options().in_channels(shape.channels).num_classes(shape.classes)));
}

}  // namespace mgpu::models
