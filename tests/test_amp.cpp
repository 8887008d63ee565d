// --amp fp16: the loss scaling of torch.amp.GradScaler. An overflowing step is skipped (the
// weights and momentum as before it) and halves the scale, for every replica at once; clean
// steps double it after the growth interval; the unscaled steps are float32's to rounding; the
// shipped model learns; the scale survives a stop and resume; the binary records it.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <ATen/autocast_mode.h>

#include <cmath>
#include <csignal>
#include <fstream>
#include <sstream>

#include "Fixtures.h"
#include "data/Preprocess.h"
#include "train/Device.h"
#include "train/Signals.h"
#include "train/Trainer.h"

using namespace mgpu;
using mgpu::testing::SmallNet;
using mgpu::testing::TempDir;
using mgpu::testing::relative_difference;
using mgpu::testing::stripes;

namespace {

train::TrainConfig fp16_config() {
  auto c = mgpu::testing::stripes_config();
  c.amp = "fp16";
  c.lr = 0.02;
  c.augment = false;  // every train_steps call takes the same batches
  c.shuffle = false;
  return c;
}

std::unique_ptr<train::Trainer> small_trainer(const train::TrainConfig& c, int64_t replicas = 1,
                                              torch::Device device = torch::kCPU) {
  torch::manual_seed(c.seed);
  return std::make_unique<train::Trainer>(
      c, torch::nn::AnyModule(SmallNet()), std::vector<torch::Device>(replicas, device),
      data::mean_image(stripes().images));
}

// A copy of a model's parameters.
std::vector<torch::Tensor> parameters_of(torch::nn::Module& m) {
  std::vector<torch::Tensor> copies;
  for (const auto& p : m.parameters()) copies.push_back(p.detach().clone());
  return copies;
}

bool same(const std::vector<torch::Tensor>& a, torch::nn::Module& m) {
  const auto b = m.parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

}  // namespace

TEST(Fp16, AnOverflowSkipsExactlyThatStepAndHalvesTheScale) {
  torch::set_num_threads(1);
  const auto c = fp16_config();
  auto skipped = small_trainer(c), twin = small_trainer(c);
  skipped->train_steps(stripes(), 2);
  twin->train_steps(stripes(), 2);
  EXPECT_EQ(skipped->loss_scale(), 65536.0);  // GradScaler's initial scale
  const auto before = parameters_of(*skipped->model().ptr());

  skipped->set_loss_scale(std::ldexp(1.0, 120));  // the scaled gradients overflow float16
  skipped->train_steps(stripes(), 1);  // no error: an overflow is not a fault in float16
  EXPECT_EQ(skipped->loss_scale(), std::ldexp(1.0, 119));
  EXPECT_TRUE(same(before, *skipped->model().ptr()));

  // The skipped step left the momentum as it was: the next steps are the twin's, bit for bit.
  skipped->set_loss_scale(65536.0);
  skipped->train_steps(stripes(), 2);
  twin->train_steps(stripes(), 2);
  EXPECT_FALSE(same(before, *skipped->model().ptr()));
  EXPECT_TRUE(same(parameters_of(*twin->model().ptr()), *skipped->model().ptr()));
}

TEST(Fp16, CleanStepsDoubleTheScaleAfterTheGrowthInterval) {
  torch::set_num_threads(1);
  auto c = fp16_config();
  c.loss_scale = 1024;
  c.loss_scale_growth_interval = 3;
  auto t = small_trainer(c);
  t->train_steps(stripes(), 2);
  EXPECT_EQ(t->loss_scale(), 1024.0);
  t->train_steps(stripes(), 1);
  EXPECT_EQ(t->loss_scale(), 2048.0);
  // An overflow resets the count of clean steps as well as halving.
  t->train_steps(stripes(), 2);
  t->set_loss_scale(std::ldexp(1.0, 120));
  t->train_steps(stripes(), 1);
  t->set_loss_scale(2048);
  t->train_steps(stripes(), 2);
  EXPECT_EQ(t->loss_scale(), 2048.0);
  t->train_steps(stripes(), 1);
  EXPECT_EQ(t->loss_scale(), 4096.0);
}

TEST(Fp16, WhenOneReplicaOverflowsEveryReplicaSkips) {
  torch::set_num_threads(1);
  auto t = small_trainer(fp16_config(), 2);
  t->train_steps(stripes(), 1);
  const auto before0 = parameters_of(*t->model(0).ptr());
  const auto before1 = parameters_of(*t->model(1).ptr());
  t->set_loss_scale(std::ldexp(1.0, 120), /*replica=*/1);  // only replica 1's gradients overflow
  t->train_steps(stripes(), 1);
  EXPECT_TRUE(same(before0, *t->model(0).ptr()));
  EXPECT_TRUE(same(before1, *t->model(1).ptr()));
  EXPECT_EQ(t->loss_scale(), 32768.0);  // replica 0 saw the overflow in the summed gradients
  t->set_loss_scale(65536);
  t->train_steps(stripes(), 1);
  EXPECT_FALSE(same(before0, *t->model(0).ptr()));
  EXPECT_TRUE(same(parameters_of(*t->model(0).ptr()), *t->model(1).ptr()));
}

TEST(Fp16, UnscaledStepsAreFloat32StepsToFloat16Rounding) {
  torch::set_num_threads(1);
  auto c = fp16_config();
  auto plain = c;
  plain.amp = "off";
  plain.fused_sgd = true;
  auto a = small_trainer(c), b = small_trainer(plain);
  a->train_steps(stripes(), 6);
  b->train_steps(stripes(), 6);
  const double difference = relative_difference(*a->model().ptr(), *b->model().ptr());
  EXPECT_LT(difference, 1e-2);  // a step of 65536 times the gradient would be far off
  EXPECT_GT(difference, 1e-6);  // float16 was used
}

// LibTorch's float16 convolutions on the CPU are some 40 times slower than its bfloat16 ones
// (no oneDNN kernels without AVX512-FP16: ten epochs of MiniGoogLeNet on the stripes took 178 s
// against bfloat16's few), so the small network learns here and the shipped model trains in
// the binary's test below (and on the GPU: scripts/gpu-check.sh).
TEST(Fp16, TrainingInFloat16Learns) {
  torch::set_num_threads(1);
  auto c = fp16_config();
  c.epochs = 10;
  c.augment = true;
  c.shuffle = true;
  std::ostringstream out;
  train::Progress quiet(0, out);
  auto t = small_trainer(c);
  const auto history = t->fit(stripes(), stripes(), quiet);
  auto plain = c;
  plain.amp = "off";
  const auto reference = small_trainer(plain)->fit(stripes(), stripes(), quiet);
  EXPECT_LT(history.back().loss, 0.7 * history.front().loss);
  // As far as float32 gets, to a sample's noise (48 images: one image is 0.02).
  EXPECT_NEAR(history.back().acc, reference.back().acc, 0.1);
  EXPECT_NEAR(history.back().loss, reference.back().loss, 0.1 * reference.back().loss);
  for (const auto& p : t->model().ptr()->parameters()) {
    EXPECT_EQ(p.scalar_type(), torch::kFloat);
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));  // the guard undid it
}

TEST(Fp16, TheScaleIsInTheCheckpointAndAResumeContinuesWithIt) {
  torch::set_num_threads(1);
  auto c = fp16_config();
  c.loss_scale = 1024;
  c.loss_scale_growth_interval = 2;  // 6 steps an epoch: the scale grows within each
  TempDir tmp;
  std::ostringstream out;
  train::Progress quiet(0, out);
  auto make = [&](const std::string& dir) {
    auto t = small_trainer(c);
    train::CheckpointPolicy policy;
    policy.dir = tmp.path() / dir;
    policy.fingerprint = R"({"fp16": true})";
    t->set_checkpoints(policy);
    return t;
  };
  auto whole = make("whole");
  whole->fit(stripes(), stripes(), quiet);
  EXPECT_GE(whole->loss_scale(), 1024.0 * 8);  // restoring it matters

  auto first = make("parts");
  mgpu::testing::stop_in_second_epoch(*first, quiet);
  auto second = make("parts");
  second->resume(first->last_checkpoint());
  EXPECT_EQ(second->loss_scale(), first->loss_scale());
  second->fit(stripes(), stripes(), quiet);
  EXPECT_EQ(second->loss_scale(), whole->loss_scale());
  EXPECT_TRUE(same(parameters_of(*whole->model().ptr()), *second->model().ptr()));
}

// On a GPU the check, the skip and the scale's update are captured in the CUDA graph: its
// replays overflow, skip and rescale as the eager steps do.
TEST(Fp16Gpu, CudaGraphReplaysSkipAndRescaleAsEagerSteps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  train::set_deterministic(true);
  auto eager = fp16_config();
  auto graphs = eager;
  graphs.cuda_graphs = true;
  auto a = small_trainer(eager, 1, torch::kCUDA), b = small_trainer(graphs, 1, torch::kCUDA);
  for (auto* t : {a.get(), b.get()}) {
    t->train_steps(stripes(), 6);  // the graph is captured at step 4 and replayed
    t->set_loss_scale(std::ldexp(1.0, 120));
    t->train_steps(stripes(), 6);  // replays from the start: the first overflows, and so on
  }
  train::set_deterministic(false);
  EXPECT_LT(b->loss_scale(), std::ldexp(1.0, 120));
  EXPECT_EQ(a->loss_scale(), b->loss_scale());
  EXPECT_LT(relative_difference(*a->model().ptr(), *b->model().ptr()), 1e-5);
}

// The shipped MiniGoogLeNet, dropout included, in float16 as users run it.
TEST(Fp16Binary, TrainRecordsTheScaleAndTheFusedStep) {
  TempDir tmp;
  const auto run = mgpu::testing::run_mgpu(
      "train --gpus 0 --threads 1 --amp fp16 --epochs 1 --limit-train 32 --limit-test 16 "
      "--batch-per-device 16 --verbose 0 --out-dir " + (tmp.path() / "run").string());
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.err.find("warning: --amp fp16 on the CPU is far slower than float32"),
            std::string::npos)
      << run.err;
  std::ifstream in(tmp.path() / "run" / "summary.json");
  const auto summary = nlohmann::json::parse(in);
  EXPECT_EQ(summary["config"]["amp"], "fp16");
  EXPECT_EQ(summary["config"]["fused_sgd"], true);
  // 65536, or halved by the overflows that a fresh network's first steps often have.
  const double scale = summary["loss_scale"];
  EXPECT_LE(scale, 65536.0);
  EXPECT_EQ(std::exp2(std::round(std::log2(scale))), scale);
}
