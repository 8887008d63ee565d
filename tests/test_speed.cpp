// The speed switches change how a step is computed, not what: the fused optimizer and the
// NHWC layout give the plain run's weights (to rounding), bf16 autocast trains and is undone
// after the step, a resumed fast run ends as its uninterrupted self, and CUDA graphs (on a
// GPU) replay the eager step.
#include <gtest/gtest.h>

#include <ATen/autocast_mode.h>

#include <csignal>
#include <sstream>

#include "Fixtures.h"
#include "data/Preprocess.h"
#include "models/MiniGoogLeNet.h"
#include "models/Registry.h"
#include "app/commands/Bench.h"
#include "train/files/Checkpoint.h"
#include "train/Device.h"
#include "train/Signals.h"
#include "train/Trainer.h"

using namespace mgpu;
using mgpu::testing::TempDir;
using mgpu::testing::relative_difference;
using mgpu::testing::stripes;

namespace {

train::TrainConfig base_config() { return mgpu::testing::stripes_config(); }

// A fresh small MiniGoogLeNet, the same for every configuration, trained for `steps` steps.
std::unique_ptr<train::Trainer> trained(const train::TrainConfig& c, int64_t steps,
                                        torch::Device device = torch::kCPU) {
  torch::manual_seed(c.seed);
  models::MiniGoogLeNet net(
      models::MiniGoogLeNetOptions().in_channels(1).num_classes(2).dropout(0.0));
  auto trainer = std::make_unique<train::Trainer>(c, torch::nn::AnyModule(net), device,
                                                  data::mean_image(stripes().images));
  trainer->train_steps(stripes(), steps);
  return trainer;
}

// A fresh small MiniGoogLeNet (dropout as shipped) fitted for c.epochs epochs on the stripes.
std::unique_ptr<train::Trainer> fitted(const train::TrainConfig& c, train::History* history,
                                       torch::Device device = torch::kCPU) {
  std::ostringstream out;
  train::Progress quiet(0, out);
  torch::manual_seed(c.seed);
  models::MiniGoogLeNet net(models::MiniGoogLeNetOptions().in_channels(1).num_classes(2));
  auto trainer = std::make_unique<train::Trainer>(c, torch::nn::AnyModule(net), device,
                                                  data::mean_image(stripes().images));
  *history = trainer->fit(stripes(), stripes(), quiet);
  return trainer;
}

// A fresh MiniGoogLeNet trainer on the stripes, writing checkpoints into dir.
std::unique_ptr<train::Trainer> checkpointing_trainer(const train::TrainConfig& c,
                                                      const std::filesystem::path& dir) {
  torch::manual_seed(c.seed);
  models::MiniGoogLeNet net(models::MiniGoogLeNetOptions().in_channels(1).num_classes(2));
  auto t = std::make_unique<train::Trainer>(c, torch::nn::AnyModule(net), torch::kCPU,
                                            data::mean_image(stripes().images));
  train::CheckpointPolicy policy;
  policy.dir = dir;
  policy.fingerprint = R"({"fast": true})";
  t->set_checkpoints(policy);
  return t;
}

// How far training moved the weights from their initial values (the scale of a step's effect).
double distance_from_start(torch::nn::Module& trained_model, const train::TrainConfig& c) {
  auto untrained = trained(c, 0);
  return relative_difference(trained_model, *untrained->model().ptr());
}

}  // namespace

TEST(Speed, TheFusedOptimizerGivesTorchSgdsWeights) {
  torch::set_num_threads(1);
  auto plain = base_config();
  auto fused = plain;
  fused.fused_sgd = true;
  auto a = trained(plain, 6), b = trained(fused, 6);
  // The same arithmetic in another order of kernels: equal to float rounding, far below what
  // the six steps changed.
  EXPECT_LT(relative_difference(*a->model().ptr(), *b->model().ptr()), 1e-5);
  EXPECT_GT(distance_from_start(*a->model().ptr(), plain), 1e-3);
}

TEST(Speed, FusedParametersAreViewsOfOneBufferInTheirLayout) {
  torch::set_num_threads(1);
  auto c = base_config();
  c.fused_sgd = true;
  c.channels_last = true;
  auto t = trained(c, 1);
  auto params = t->model().ptr()->parameters();
  const auto* base = static_cast<const float*>(params.front().data_ptr());
  int64_t offset = 0, four_d = 0;
  for (const auto& p : params) {
    EXPECT_EQ(static_cast<const float*>(p.data_ptr()), base + offset);  // one flat buffer
    if (p.dim() == 4) {
      ++four_d;
      EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast));
      EXPECT_EQ(p.grad().strides(), p.strides());  // the gradient has the same layout
    }
    offset += p.numel();
  }
  EXPECT_GT(four_d, 10);
}

TEST(Speed, ChannelsLastComputesThePlainRunsStep) {
  // The tutorial's recipe feeds raw mean-subtracted pixels, so the first layer's updates are
  // large and rounding differences grow by ~10x a step; one step's update is compared.
  torch::set_num_threads(1);
  auto plain = base_config();
  auto nhwc = plain;
  nhwc.channels_last = true;
  auto start = trained(plain, 0), a = trained(plain, 1), b = trained(nhwc, 1);
  auto p0 = start->model().ptr()->named_parameters(), pb = b->model().ptr()->named_parameters();
  double diff = 0, moved = 0;
  for (const auto& item : a->model().ptr()->named_parameters()) {
    const auto da = item.value() - p0[item.key()], db = pb[item.key()] - p0[item.key()];
    diff = std::max(diff, (da - db).abs().max().item<double>());
    moved = std::max(moved, da.abs().max().item<double>());
  }
  EXPECT_GT(moved, 1e-3);
  // Rounding (BN makes the first layer's gradient a small difference of large sums) gives
  // ~0.3% here; a gradient in the wrong layout would be off by the whole update.
  EXPECT_LT(diff, 1e-2 * moved);
  for (const auto& p : b->model().ptr()->parameters()) {
    if (p.dim() == 4) {
      EXPECT_TRUE(p.is_contiguous(at::MemoryFormat::ChannelsLast));
    }
  }
}

TEST(Speed, Bf16AutocastTrainsKeepsFloat32WeightsAndEndsWithTheStep) {
  torch::set_num_threads(1);
  auto plain = base_config();
  auto bf16 = plain;
  bf16.amp = "bf16";
  bf16.epochs = plain.epochs = 10;
  train::History history;
  auto trainer = fitted(bf16, &history);
  EXPECT_LT(history.back().loss, 0.7 * history.front().loss);
  EXPECT_GT(history.back().acc, 0.85);  // training accuracy (running statistics lag behind)
  for (const auto& p : trainer->model().ptr()->parameters()) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat);
  }
  for (const auto& b : trainer->model().ptr()->buffers()) {
    if (b.is_floating_point()) {
      EXPECT_EQ(b.scalar_type(), torch::kFloat);
    }
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));  // the guard undid it
  // Autocast was on: the weights differ from float32 training's by more than rounding.
  auto a = trained(plain, 4), b = trained(bf16, 4);
  EXPECT_GT(relative_difference(*a->model().ptr(), *b->model().ptr()), 1e-4);
}

TEST(Speed, AFastRunStoppedAndResumedEndsAsItsUninterruptedSelf) {
  torch::set_num_threads(1);
  auto c = base_config();
  c.fused_sgd = true;
  c.channels_last = true;
  c.amp = "bf16";
  TempDir tmp;
  std::ostringstream out;
  train::Progress quiet(0, out);
  auto make = [&](const std::string& dir) { return checkpointing_trainer(c, tmp.path() / dir); };
  auto whole = make("whole");
  whole->fit(stripes(), stripes(), quiet);

  auto first = make("parts");
  mgpu::testing::stop_in_second_epoch(*first, quiet);
  auto second = make("parts");
  second->resume(first->last_checkpoint());  // epoch 2, after step 1: momentum and all
  second->fit(stripes(), stripes(), quiet);
  auto pw = whole->model().ptr()->named_parameters();
  for (const auto& item : second->model().ptr()->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), pw[item.key()])) << item.key();
  }
}

// The memory format may change between the parts of a run (README). The fused optimizer's
// momentum buffer follows the parameters' layout, so a checkpoint holds it in logical order:
// resumed in the other layout, fused SGD continues as torch's SGD does (whose per-tensor state
// LibTorch moves between layouts), to float rounding.
TEST(Speed, ARunResumedInTheOtherMemoryFormatContinuesAsTorchSgdDoes) {
  torch::set_num_threads(1);
  TempDir tmp;
  std::ostringstream out;
  train::Progress quiet(0, out);
  auto make = [&](const train::TrainConfig& c, const std::string& dir) {
    return checkpointing_trainer(c, tmp.path() / dir);
  };
  std::vector<std::unique_ptr<train::Trainer>> resumed;
  for (bool fused : {true, false}) {
    auto c = base_config();
    c.fused_sgd = fused;
    c.channels_last = true;
    const std::string dir = fused ? "fused" : "plain";
    auto first = make(c, dir);
    mgpu::testing::stop_in_second_epoch(*first, quiet);
    c.channels_last = false;
    resumed.push_back(make(c, dir));
    resumed.back()->resume(first->last_checkpoint());  // epoch 2, after step 1
    EXPECT_EQ(resumed.back()->fit(stripes(), stripes(), quiet).size(), 2u);
  }
  EXPECT_LT(relative_difference(*resumed[0]->model().ptr(), *resumed[1]->model().ptr()), 1e-5);
}

TEST(Speed, CudaGraphsAreRefusedOnTheCpu) {
  auto c = base_config();
  c.cuda_graphs = true;
  const auto message = mgpu::testing::error_of([&] { trained(c, 1); });
  EXPECT_NE(message.find("--cuda-graphs needs GPUs"), std::string::npos) << message;
}

TEST(Speed, ForwardFlopsAreCountedFromTheOperators) {
  // One 3x3 convolution, 3 -> 8 channels, on 3x32x32: 2 * 8 * 3 * 9 * 32 * 32 FLOPs; a linear
  // layer 10 -> 4 adds 2 * 10 * 4.
  torch::nn::AnyModule conv(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)));
  EXPECT_EQ(models::forward_flops(conv, models::ModelShape{}), 2.0 * 8 * 3 * 9 * 32 * 32);
  torch::nn::AnyModule linear(torch::nn::Linear(10, 4));
  EXPECT_EQ(models::forward_flops(linear, {1, 1, 10, 10}), 2.0 * 10 * 4);
  // MiniGoogLeNet: 469,195,840 by PyTorch's FlopCounterMode on benchmarks' Python port.
  auto net = models::make_model("minigooglenet", models::ModelShape{});
  EXPECT_NEAR(models::forward_flops(net, models::ModelShape{}), 469195840.0, 1e3);
  EXPECT_TRUE(net.ptr()->is_training());  // counted in eval mode, then restored
}

// The bench's warm-up holds the graph's capture and a replay after it, whatever --warmup says:
// the first timed step is a plain replay (issue 23: with --warmup 3 it used to be the capture).
TEST(Speed, TheBenchCapturesTheGraphDuringItsWarmUp) {
  const auto graphs = app::at_level(train::TrainConfig{}, "cuda-graphs");
  // Steps 1..kEagerStepsBeforeCapture run eagerly, the next is captured and replayed.
  const int64_t capture_step = train::kEagerStepsBeforeCapture + 1;
  for (int64_t asked : {0, 1, 3, 4}) {
    EXPECT_GT(app::warmup_steps(graphs, asked), capture_step) << asked;
  }
  EXPECT_EQ(app::warmup_steps(graphs, 30), 30);
  EXPECT_EQ(app::warmup_steps(app::at_level(train::TrainConfig{}, "fused-sgd"), 3), 3);
  EXPECT_EQ(app::warmup_steps(app::at_level(train::TrainConfig{}, "fp32"), 0), 0);
}

TEST(Speed, BenchLevelsAddOneSwitchEach) {
  EXPECT_EQ(app::bench_levels("all", false),
            (std::vector<std::string>{"fp32", "channels-last", "bf16", "fused-sgd"}));
  EXPECT_EQ(app::bench_levels("all", true).back(), "cuda-graphs");
  EXPECT_EQ(app::bench_levels("bf16,fp32", false), (std::vector<std::string>{"fp32", "bf16"}));
  auto c = app::at_level(train::TrainConfig{}, "bf16");
  EXPECT_TRUE(c.channels_last);
  EXPECT_EQ(c.amp, "bf16");
  EXPECT_FALSE(c.fused_sgd);
  c = app::at_level(c, "fp32");
  EXPECT_FALSE(c.channels_last);
  EXPECT_EQ(c.amp, "off");
  EXPECT_TRUE(app::at_level(c, "cuda-graphs").cuda_graphs);
  EXPECT_NE(mgpu::testing::error_of([] { app::bench_levels("fp32,fast", false); })
                .find("unknown level 'fast'"),
            std::string::npos);
  EXPECT_NE(mgpu::testing::error_of([] { app::bench_levels("cuda-graphs", false); })
                .find("needs GPUs"),
            std::string::npos);
}

TEST(SpeedGpu, CudaGraphReplaysGiveTheEagerStepsWeights) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  // Deterministic kernels, so that the replays must repeat the eager steps' arithmetic (the
  // tutorial's recipe amplifies any rounding difference about tenfold a step).
  train::set_deterministic(true);
  auto eager = base_config();
  eager.fused_sgd = true;
  auto graphs = eager;
  graphs.cuda_graphs = true;
  // 3 eager steps, the capture, then 5 replays; the data and shifts are the same.
  auto a = trained(eager, 9, torch::kCUDA), b = trained(graphs, 9, torch::kCUDA);
  train::set_deterministic(false);
  EXPECT_LT(relative_difference(*a->model().ptr(), *b->model().ptr()), 1e-5);
  EXPECT_GT(distance_from_start(*a->model().ptr(), eager), 1e-3);
}

TEST(SpeedGpu, EveryLevelTrainsOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  for (const auto& level : app::bench_levels("all", true)) {
    auto c = app::at_level(base_config(), level);
    c.epochs = 10;
    train::History history;
    fitted(c, &history, torch::kCUDA);
    EXPECT_GT(history.back().acc, 0.9) << level;
  }
}
