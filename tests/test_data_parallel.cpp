// Data parallelism on CPU replicas: N replicas, one replica accumulating N micro-batches and N
// processes train the same model (dropout and batch-norm statistics included), replicas stay
// identical, batch-norm statistics are averaged, gradients share one buffer.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <sstream>
#include <tuple>

#include "Fixtures.h"
#include "data/Preprocess.h"
#include "models/MiniGoogLeNet.h"
#include "train/Trainer.h"
#include "train/files/Weights.h"

using namespace mgpu;

namespace {

data::Dataset random_dataset(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return {torch::randint(0, 256, {n, 1, 28, 28}, gen, torch::kUInt8),
          torch::randint(0, 4, {n}, gen, torch::kInt64)};
}

torch::nn::AnyModule mini_googlenet(double dropout = 0.0) {
  torch::manual_seed(11);  // the same initial weights every time
  return torch::nn::AnyModule(models::MiniGoogLeNet(
      models::MiniGoogLeNetOptions().in_channels(1).num_classes(4).dropout(dropout)));
}

train::TrainConfig parallel_config(int64_t accumulate) {
  train::TrainConfig c;
  c.batch_per_device = 4;
  c.accumulate = accumulate;
  c.epochs = 1;
  c.eval_batch = 16;
  c.verbose = 0;
  c.seed = 9;
  return c;
}

struct Result {
  std::vector<torch::Tensor> weights;
  std::vector<torch::Tensor> buffers;  // batch-norm statistics, averaged by the evaluation
  train::History history;
};

Result train_with(int replicas, int64_t accumulate, const data::Dataset& train_set,
                  bool dropout = false, int64_t lookahead = 0) {
  std::vector<torch::Device> devices(static_cast<size_t>(replicas), torch::kCPU);
  auto c = parallel_config(accumulate);
  c.lookahead = lookahead;
  train::Trainer trainer(c, mini_googlenet(dropout ? 0.5 : 0.0), devices,
                         data::mean_image(train_set.images));
  std::ostringstream out;
  train::Progress progress(0, out);
  Result r;
  r.history = trainer.fit(train_set, train_set.first(8), progress);
  for (const auto& p : trainer.model(0).ptr()->parameters()) r.weights.push_back(p.detach().clone());
  for (const auto& b : trainer.model(0).ptr()->buffers()) r.buffers.push_back(b.detach().clone());
  return r;
}

}  // namespace

// With the shipped MiniGoogLeNet, dropout on: its masks are keyed by each image's place in the
// global batch (models/Dropout.h), so N replicas and N micro-batches draw the same ones.
class SplitInvariance : public ::testing::TestWithParam<std::tuple<int, int64_t>> {};

// With --lookahead 2 too (steps 2 and 3 move the weights and every replica's, or micro-batch's,
// statistics to their averages): the averages of the statistics are per replica and per
// micro-batch alike.
TEST_P(SplitInvariance, NReplicasEqualOneReplicaAccumulatingN) {
  const auto [n, lookahead] = GetParam();
  const auto train_set = random_dataset(12 * n, 1);  // global batch 4n: 3 steps
  const Result replicas = train_with(n, 1, train_set, /*dropout=*/true, lookahead);
  const Result accumulated = train_with(1, n, train_set, true, lookahead);
  const Result plain = train_with(1, 1, train_set, true, lookahead);  // another trajectory
  ASSERT_EQ(replicas.weights.size(), accumulated.weights.size());
  double max_diff = 0, plain_diff = 0;
  for (size_t i = 0; i < replicas.weights.size(); ++i) {
    max_diff = std::max(max_diff,
                        (replicas.weights[i] - accumulated.weights[i]).abs().max().item<double>());
    plain_diff = std::max(plain_diff,
                          (replicas.weights[i] - plain.weights[i]).abs().max().item<double>());
  }
  EXPECT_LT(max_diff, 1e-5);
  EXPECT_GT(plain_diff, 1e-3);  // the comparison can tell trajectories apart
  // Batch-norm running statistics too: micro-batch k keeps its own, as replica k does, and the
  // evaluation averages them.
  double stats_diff = 0;
  for (size_t i = 0; i < replicas.buffers.size(); ++i) {
    const auto& a = replicas.buffers[i];
    const auto& b = accumulated.buffers[i];
    stats_diff = std::max(stats_diff, ((a - b).abs() / (1 + a.abs())).max().item<double>());
  }
  EXPECT_LT(stats_diff, 1e-5);
  EXPECT_NEAR(replicas.history[0].loss, accumulated.history[0].loss, 1e-5);
  EXPECT_DOUBLE_EQ(replicas.history[0].acc, accumulated.history[0].acc);
}

INSTANTIATE_TEST_SUITE_P(DataParallel, SplitInvariance,
                         ::testing::Combine(::testing::Values(2, 3), ::testing::Values(int64_t{0}, int64_t{2})),
                         [](const auto& info) {
                           return fmt::format("{}Replicas{}", std::get<0>(info.param),
                                              std::get<1>(info.param) ? "WithLookahead" : "");
                         });

TEST(DataParallel, TwoRunsOnTwoReplicasWithDropoutAreBitIdentical) {
  const auto train_set = random_dataset(24, 3);
  const Result a = train_with(2, 1, train_set, true), b = train_with(2, 1, train_set, true);
  for (size_t i = 0; i < a.weights.size(); ++i) {
    EXPECT_TRUE(torch::equal(a.weights[i], b.weights[i])) << "parameter " << i;
  }
}

TEST(DataParallel, ReplicasHoldIdenticalWeightsAfterEveryStep) {
  const auto train_set = random_dataset(8, 2);  // one global batch: every epoch is one step
  auto c = parallel_config(1);
  c.epochs = 3;
  train::Trainer trainer(c, mini_googlenet(), {torch::kCPU, torch::kCPU},
                         data::mean_image(train_set.images));
  ASSERT_EQ(trainer.global_batch(), 8);
  std::ostringstream out;
  train::Progress progress(0, out);
  int checked = 0;
  trainer.fit(train_set, train_set.first(8), progress, [&](const train::History&) {
    const auto a = trainer.model(0).ptr()->parameters();
    const auto b = trainer.model(1).ptr()->parameters();
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
      EXPECT_NE(a[i].data_ptr(), b[i].data_ptr());
    }
    const auto ba = trainer.model(0).ptr()->buffers();
    const auto bb = trainer.model(1).ptr()->buffers();
    for (size_t i = 0; i < ba.size(); ++i) EXPECT_TRUE(torch::equal(ba[i], bb[i])) << "buffer " << i;
    ++checked;
  });
  EXPECT_EQ(checked, 3);
}

TEST(DataParallel, BatchNormStatisticsAreAveragedBeforeEvaluation) {
  const auto data_set = random_dataset(8, 3);
  train::Trainer trainer(parallel_config(1), mini_googlenet(), {torch::kCPU, torch::kCPU},
                         data::mean_image(data_set.images));
  auto bn = [&](int64_t r) {
    for (auto& m : trainer.model(r).ptr()->modules(false)) {
      if (auto* b = m->as<torch::nn::BatchNorm2d>()) return b;
    }
    throw std::logic_error("no batch norm");
  };
  {
    torch::NoGradGuard no_grad;
    bn(0)->running_mean.fill_(1.0);
    bn(1)->running_mean.fill_(3.0);
    bn(0)->running_var.fill_(2.0);
    bn(1)->running_var.fill_(6.0);
  }
  trainer.evaluate(data_set);
  for (int64_t r : {0, 1}) {
    EXPECT_TRUE(torch::allclose(bn(r)->running_mean, torch::full_like(bn(r)->running_mean, 2.0)));
    EXPECT_TRUE(torch::allclose(bn(r)->running_var, torch::full_like(bn(r)->running_var, 4.0)));
  }
}

TEST(DataParallel, EvaluationSplitAcrossReplicasMatchesOneReplica) {
  const auto data_set = random_dataset(13, 4);  // 13 images: uneven parts
  train::Trainer one(parallel_config(1), mini_googlenet(), torch::kCPU,
                     data::mean_image(data_set.images));
  train::Trainer three(parallel_config(1), mini_googlenet(),
                       {torch::kCPU, torch::kCPU, torch::kCPU}, data::mean_image(data_set.images));
  const auto a = one.evaluate(data_set);
  const auto b = three.evaluate(data_set);
  EXPECT_NEAR(a.loss, b.loss, 1e-5);
  EXPECT_DOUBLE_EQ(a.acc, b.acc);
}

TEST(DataParallel, GradientsLiveInOneFlatBuffer) {
  const auto train_set = random_dataset(8, 5);
  train::Trainer trainer(parallel_config(1), mini_googlenet(), {torch::kCPU, torch::kCPU},
                         data::mean_image(train_set.images));
  std::ostringstream out;
  train::Progress progress(0, out);
  trainer.fit(train_set, train_set, progress);
  const auto params = trainer.model(1).ptr()->parameters();
  for (size_t i = 0; i + 1 < params.size(); ++i) {
    ASSERT_TRUE(params[i].grad().defined());
    const auto* end = static_cast<const float*>(params[i].grad().data_ptr()) + params[i].numel();
    EXPECT_EQ(static_cast<const void*>(end), params[i + 1].grad().data_ptr()) << "parameter " << i;
  }
}

TEST(DataParallel, LinearScalingMultipliesTheRateByTheGlobalBatch) {
  const auto train_set = random_dataset(16, 6);
  auto c = parallel_config(2);
  c.lr_scaling = "linear";
  train::Trainer trainer(c, mini_googlenet(), {torch::kCPU, torch::kCPU},
                         data::mean_image(train_set.images));
  EXPECT_EQ(trainer.global_batch(), 16);
  EXPECT_DOUBLE_EQ(trainer.schedule().scale, 4.0);  // 2 replicas x 2 micro-batches
  std::ostringstream out;
  train::Progress progress(0, out);
  const auto history = trainer.fit(train_set, train_set, progress);
  EXPECT_DOUBLE_EQ(history[0].lr, 4 * c.lr);
}

namespace {

// The largest difference between two weights files' tensors (parameters and buffers), relative
// to 1 + the value's size.
double weights_difference(const std::filesystem::path& a, const std::filesystem::path& b) {
  const auto x = train::load_weights(a, torch::kCPU), y = train::load_weights(b, torch::kCPU);
  auto theirs = y.module.ptr()->named_parameters();
  double diff = 0;
  for (const auto& item : x.module.ptr()->named_parameters()) {
    const auto& t = theirs[item.key()];
    diff = std::max(diff, ((item.value() - t).abs() / (1 + t.abs())).max().item<double>());
  }
  auto their_buffers = y.module.ptr()->named_buffers();
  for (const auto& item : x.module.ptr()->named_buffers()) {
    const auto u = item.value().to(torch::kDouble), v = their_buffers[item.key()].to(torch::kDouble);
    diff = std::max(diff, ((u - v).abs() / (1 + v.abs())).max().item<double>());
  }
  return diff;
}

}  // namespace

// The shipped MiniGoogLeNet (dropout on) trained by `mgpu train` as 3 CPU replicas, as one
// replica accumulating 3 micro-batches, and as 3 processes over Gloo: the same weights and
// batch-norm statistics, bit for bit (every backend adds the ranks' gradients in rank order;
// with 3 ranks another order changes the rounding, with 2 it could not, a + b being b + a).
TEST(DataParallelBinary, ReplicasMicroBatchesAndProcessesTrainTheSameModel) {
  mgpu::testing::TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 20);
  const std::string common = fmt::format(
      "{} train --gpus 0 --threads 1 --dataset cifar10 --no-download --data-dir {} --epochs 1 "
      "--limit-train 96 --limit-test 16 --batch-per-device 8 --verbose 0 --seed 5 --comm-timeout 60",
      mgpu::testing::kMgpuBinary, (tmp.path() / "data").string());
  auto out = [&](const char* name) { return (tmp.path() / name).string(); };
  ASSERT_EQ(std::system((common + " --cpu-replicas 3 --out-dir " + out("replicas")).c_str()), 0);
  ASSERT_EQ(std::system((common + " --accumulate 3 --out-dir " + out("micro")).c_str()), 0);
  const std::string env = fmt::format("WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT={}",
                                      mgpu::testing::free_port());
  const std::string three = fmt::format("(RANK=1 {0} {1} --out-dir {2} > {3}/log1 2>&1 &) ; "
                                        "(RANK=2 {0} {1} --out-dir {2} > {3}/log2 2>&1 &) ; "
                                        "RANK=0 {0} {1} --out-dir {2} > {3}/log0 2>&1",
                                        env, common, out("processes"), tmp.path().string());
  ASSERT_EQ(std::system(three.c_str()), 0);
  const auto model = [&](const char* name) { return tmp.path() / name / "model.pt"; };
  const auto plain = tmp.path() / "plain";  // batch 8 alone: another trajectory
  ASSERT_EQ(std::system((common + " --out-dir " + plain.string()).c_str()), 0);
  EXPECT_EQ(weights_difference(model("replicas"), model("micro")), 0);
  EXPECT_EQ(weights_difference(model("replicas"), model("processes")), 0);
  EXPECT_GT(weights_difference(model("replicas"), plain / "model.pt"), 1e-3);
}
