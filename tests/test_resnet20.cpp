// ResNet-20 (models/ResNet20.cpp): the paper's size, the PyTorch port's names, option-A
// shortcuts, PyTorch's batch-norm defaults and He initialisation.
#include <gtest/gtest.h>

#include <cmath>

#include "models/Registry.h"
#include "app/commands/Export.h"

using namespace mgpu;

namespace {

torch::nn::AnyModule resnet20(const models::ModelShape& shape = {}) {
  torch::manual_seed(1);
  return models::make_model("resnet20", shape);
}

}  // namespace

TEST(ResNet20, HasThePapersParameterCount) {
  // He et al. (2016), table 6: 0.27M. 269,722 with parameter-free shortcuts, as in the port.
  EXPECT_EQ(models::count_parameters(*resnet20().ptr()), 269722);
}

TEST(ResNet20, NamesItsTensorsAsThePyTorchPortDoes) {
  const auto entries = app::state_dict(*resnet20().ptr());
  ASSERT_EQ(entries.size(), 116u);  // 19 conv weights, 19 x 5 batch-norm tensors, 2 linear
  EXPECT_EQ(entries.front().first, "conv1.weight");
  EXPECT_EQ(entries[1].first, "bn1.weight");
  EXPECT_EQ(entries[5].first, "bn1.num_batches_tracked");
  EXPECT_EQ(entries[6].first, "layer1.0.conv1.weight");
  EXPECT_EQ(entries.back().first, "linear.bias");
  for (const auto& [name, tensor] : entries) {
    EXPECT_EQ(name.find("shortcut"), std::string::npos) << "option A has no parameters: " << name;
  }
}

TEST(ResNet20, StagesHaveSixteenThirtyTwoAndSixtyFourChannels) {
  const auto entries = app::state_dict(*resnet20().ptr());
  auto shape_of = [&](const std::string& name) {
    for (const auto& [n, t] : entries) {
      if (n == name) return t.sizes().vec();
    }
    return std::vector<int64_t>{};
  };
  EXPECT_EQ(shape_of("layer1.2.conv2.weight"), (std::vector<int64_t>{16, 16, 3, 3}));
  EXPECT_EQ(shape_of("layer2.0.conv1.weight"), (std::vector<int64_t>{32, 16, 3, 3}));
  EXPECT_EQ(shape_of("layer3.0.conv1.weight"), (std::vector<int64_t>{64, 32, 3, 3}));
  EXPECT_EQ(shape_of("layer3.2.conv2.weight"), (std::vector<int64_t>{64, 64, 3, 3}));
  EXPECT_EQ(shape_of("layer3.3.conv1.weight"), (std::vector<int64_t>{}));  // three blocks
  EXPECT_EQ(shape_of("linear.weight"), (std::vector<int64_t>{10, 64}));
}

TEST(ResNet20, ShortcutsPassTheInputThroughAndZeroPadTheNewChannels) {
  // With every conv weight zero, each block is relu(0 + shortcut(x)) and the net's features
  // are the input subsampled and zero-padded: the first 16 of 64 channels hold it.
  auto net = resnet20();
  {
    torch::NoGradGuard no_grad;
    for (const auto& [name, t] : app::state_dict(*net.ptr())) {
      if (name != "conv1.weight" && name.find("conv") != std::string::npos) t.zero_();
    }
  }
  net.ptr()->eval();
  auto* stem = net.ptr().get();
  const auto x = torch::randn({2, 3, 32, 32});
  torch::Tensor by_hand;
  {
    torch::NoGradGuard no_grad;
    auto params = stem->named_parameters();
    auto buffers = stem->named_buffers();
    auto h = torch::relu(torch::batch_norm(torch::conv2d(x, params["conv1.weight"], {}, 1, 1),
                                           params["bn1.weight"], params["bn1.bias"],
                                           buffers["bn1.running_mean"], buffers["bn1.running_var"],
                                           false, 0.1, 1e-5, false));
    // A block with zero convs adds bn2(0) = 0 (eval mode, fresh statistics) to its shortcut,
    // and the ReLU changes nothing (the stem's output is already >= 0).
    h = h.slice(2, 0, 32, 2).slice(3, 0, 32, 2);          // layer2 subsamples
    h = torch::constant_pad_nd(h, {0, 0, 0, 0, 8, 8});    // 16 -> 32 channels
    h = h.slice(2, 0, 16, 2).slice(3, 0, 16, 2);          // layer3 subsamples
    h = torch::constant_pad_nd(h, {0, 0, 0, 0, 16, 16});  // 32 -> 64 channels
    h = torch::adaptive_avg_pool2d(h, {1, 1}).flatten(1);
    by_hand = torch::linear(h, params["linear.weight"], params["linear.bias"]);
  }
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(net.forward(x), by_hand, 1e-5, 1e-5));
}

TEST(ResNet20, UsesPyTorchBatchNormDefaultsAndHeInitialisation) {
  auto net = resnet20();
  for (const auto& m : net.ptr()->modules()) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      EXPECT_DOUBLE_EQ(bn->options.eps(), 1e-5);
      EXPECT_DOUBLE_EQ(bn->options.momentum().value(), 0.1);
    }
  }
  for (const auto& p : net.ptr()->named_parameters()) {
    if (p.key() != "layer3.1.conv1.weight") continue;
    const double fan_in = 64 * 3 * 3;
    EXPECT_NEAR(p.value().std().item<double>(), std::sqrt(2.0 / fan_in), 0.002);
    EXPECT_NEAR(p.value().mean().item<double>(), 0.0, 0.002);
  }
}

TEST(ResNet20, TakesOneChannel28x28ImagesToo) {
  auto net = resnet20({1, 28, 28, 10});
  net.ptr()->eval();
  EXPECT_EQ(net.forward(torch::randn({3, 1, 28, 28})).sizes(), (torch::IntArrayRef{3, 10}));
}
