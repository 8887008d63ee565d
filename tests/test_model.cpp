// MiniGoogLeNet: parameter count, every intermediate shape, cloning, Keras initialisation.
#include <gtest/gtest.h>

#include "models/MiniGoogLeNet.h"
#include "models/Registry.h"  // defines: count_parameters

using namespace mgpu::models;

namespace {

int64_t conv_output_channels(torch::nn::Module& module) {
  int64_t total = 0;
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) total += conv->options.out_channels();
  }
  return total;
}

}  // namespace

TEST(MiniGoogLeNet, ParameterCountMatchesTheTutorialWithoutConvBiases) {
  MiniGoogLeNet net;
  EXPECT_EQ(count_parameters(*net), 1651114);
  // The Keras model also has one bias per conv output channel: 1,712 of them.
  EXPECT_EQ(conv_output_channels(*net), 1712);
  EXPECT_EQ(count_parameters(*net) + conv_output_channels(*net), 1652826);
  for (auto& m : net->modules(false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      EXPECT_FALSE(conv->bias.defined());
    }
  }
}

TEST(MiniGoogLeNet, EveryIntermediateShapeAt32x32) {
  MiniGoogLeNet net;
  net->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 3, 32, 32});
  const std::vector<std::vector<int64_t>> expected = {
      {2, 96, 32, 32},   // conv 96
      {2, 64, 32, 32},   // inception 32+32
      {2, 80, 32, 32},   // inception 32+48
      {2, 160, 15, 15},  // downsample 80 (+80 pooled)
      {2, 160, 15, 15},  // inception 112+48
      {2, 160, 15, 15},  // inception 96+64
      {2, 160, 15, 15},  // inception 80+80
      {2, 144, 15, 15},  // inception 48+96
      {2, 240, 7, 7},    // downsample 96 (+144 pooled)
      {2, 336, 7, 7},    // inception 176+160
      {2, 336, 7, 7},    // inception 176+160
  };
  ASSERT_EQ(net->features->size(), expected.size());
  size_t i = 0;
  for (auto& block : *net->features) {
    x = block.forward(x);
    EXPECT_EQ(x.sizes().vec(), expected[i]) << "after feature block " << i;
    ++i;
  }
  EXPECT_EQ(net->forward(torch::randn({2, 3, 32, 32})).sizes().vec(),
            (std::vector<int64_t>{2, 10}));
}

TEST(MiniGoogLeNet, AcceptsOneChannel28x28AndOtherClassCounts) {
  MiniGoogLeNet net(MiniGoogLeNetOptions().in_channels(1).num_classes(7));
  auto y = net->forward(torch::randn({3, 1, 28, 28}));
  EXPECT_EQ(y.sizes().vec(), (std::vector<int64_t>{3, 7}));
  EXPECT_EQ(net->features->forward(torch::randn({1, 1, 28, 28})).sizes().vec(),
            (std::vector<int64_t>{1, 336, 6, 6}));
  EXPECT_EQ(net->forward(torch::randn({1, 1, 40, 36})).sizes().vec(),
            (std::vector<int64_t>{1, 7}));
}

TEST(MiniGoogLeNet, RefusesInputSmallerThan28OrWrongChannels) {
  MiniGoogLeNet net;
  EXPECT_THROW(net->forward(torch::randn({1, 3, 27, 32})), c10::Error);
  EXPECT_THROW(net->forward(torch::randn({1, 1, 32, 32})), c10::Error);
}

TEST(MiniGoogLeNet, BatchNormUsesKerasDefaults) {
  MiniGoogLeNet net;
  int count = 0;
  for (auto& m : net->modules(false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      EXPECT_DOUBLE_EQ(bn->options.eps(), 1e-3);
      EXPECT_DOUBLE_EQ(bn->options.momentum().value(), 0.01);
      ++count;
    }
  }
  EXPECT_EQ(count, 19);  // one per conv module: 1 + 8 inceptions x 2 + 2 downsamples
}

TEST(MiniGoogLeNet, KerasInitialisationGlorotUniformAndZeroBias) {
  torch::manual_seed(0);
  MiniGoogLeNet net;
  auto w = net->classifier->weight;  // [10, 336]
  const double limit = std::sqrt(6.0 / (336 + 10));
  EXPECT_LE(w.abs().max().item<double>(), limit);
  EXPECT_GT(w.abs().max().item<double>(), 0.9 * limit);
  // A uniform(-a, a) has standard deviation a / sqrt(3).
  EXPECT_NEAR(w.std().item<double>(), limit / std::sqrt(3.0), 0.05 * limit);
  EXPECT_EQ(net->classifier->bias.abs().max().item<double>(), 0.0);
  auto first = (*net->features)[0]->as<ConvModuleImpl>()->conv->weight;  // [96, 3, 3, 3]
  const double conv_limit = std::sqrt(6.0 / (3 * 9 + 96 * 9));
  EXPECT_LE(first.abs().max().item<double>(), conv_limit);
  EXPECT_NEAR(first.std().item<double>(), conv_limit / std::sqrt(3.0), 0.05 * conv_limit);
}

TEST(MiniGoogLeNet, CloneIsAnIndependentDeepCopy) {
  MiniGoogLeNet net;
  auto copy = std::dynamic_pointer_cast<MiniGoogLeNetImpl>(net->clone(torch::kCPU));
  ASSERT_TRUE(copy);
  const auto a = net->named_parameters();
  const auto b = copy->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) {
    EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
    EXPECT_NE(p.value().data_ptr(), b[p.key()].data_ptr()) << p.key();
  }
  const auto before = net->classifier->weight.clone();
  {
    torch::NoGradGuard no_grad;
    copy->classifier->weight.add_(1.0);
  }
  EXPECT_TRUE(torch::equal(net->classifier->weight, before));
  // Buffers (batch-norm running statistics) are copied too, not shared.
  copy->train();
  copy->forward(torch::randn({4, 3, 32, 32}));
  auto bn = (*net->features)[0]->as<ConvModuleImpl>()->bn;
  EXPECT_EQ(bn->running_mean.abs().max().item<double>(), 0.0);
}

TEST(MiniGoogLeNet, CloneOntoGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  MiniGoogLeNet net;
  auto gpu = std::dynamic_pointer_cast<MiniGoogLeNetImpl>(net->clone(torch::Device("cuda:0")));
  for (const auto& p : gpu->parameters()) EXPECT_TRUE(p.is_cuda());
  EXPECT_EQ(gpu->forward(torch::randn({2, 3, 32, 32}, torch::kCUDA)).sizes().vec(),
            (std::vector<int64_t>{2, 10}));
}
