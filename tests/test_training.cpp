// Training: it learns a task a CNN can see, it is reproducible, it stops on a non-finite loss,
// and a whole run leaves every output file behind.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include "Fixtures.h"
#include "data/Preprocess.h"
#include "models/MiniGoogLeNet.h"
#include "models/Registry.h"
#include "train/Device.h"
#include "train/report/Plot.h"
#include "app/commands/Train.h"
#include "train/Trainer.h"
#include "train/files/Weights.h"

using namespace mgpu;
using mgpu::testing::TempDir;

namespace {

train::TrainConfig small_config() {
  train::TrainConfig c;
  c.batch_per_device = 16;
  c.eval_batch = 64;
  c.epochs = 4;
  c.lr = 5e-3;
  c.verbose = 0;
  c.seed = 3;
  return c;
}

torch::nn::AnyModule small_model() {
  return torch::nn::AnyModule(
      models::MiniGoogLeNet(models::MiniGoogLeNetOptions().in_channels(1).num_classes(4)));
}

}  // namespace

TEST(Training, LearnsPatternsAndTheLossFalls) {
  torch::set_num_threads(2);
  torch::manual_seed(0);
  // 25 steps per epoch, 100 in all (the last epoch's training accuracy 0.9975, its loss a
  // tenth of the first's, on 2026-12-07)
  const auto train_set = mgpu::testing::pattern_dataset(400, 1);
  const auto test_set = mgpu::testing::pattern_dataset(64, 2);
  auto config = small_config();
  train::Trainer trainer(config, small_model(), torch::kCPU, data::mean_image(train_set.images));
  std::ostringstream out;
  train::Progress progress(0, out);
  int epochs_seen = 0;
  const auto history = trainer.fit(train_set, test_set, progress,
                                   [&](const train::History& h) { epochs_seen = h.size(); });
  ASSERT_EQ(history.size(), 4u);
  EXPECT_EQ(epochs_seen, 4);
  EXPECT_GT(history.back().acc, 0.95);                // training accuracy
  EXPECT_LT(history.back().loss, 0.3 * history.front().loss);
  EXPECT_DOUBLE_EQ(history[0].lr, 5e-3);
  EXPECT_DOUBLE_EQ(history[3].lr, 5e-3 * 0.25);
  EXPECT_TRUE(out.str().empty());  // verbose 0 is silent
  EXPECT_GT(trainer.images_per_second(), 0.0);
}

TEST(Training, SameSeedGivesIdenticalWeights) {
  const auto train_set = mgpu::testing::pattern_dataset(48, 1);
  const auto test_set = mgpu::testing::pattern_dataset(16, 2);
  auto config = small_config();
  config.epochs = 1;
  std::vector<torch::Tensor> weights[2];
  for (auto& w : weights) {
    torch::manual_seed(5);
    train::Trainer trainer(config, small_model(), torch::kCPU, data::mean_image(train_set.images));
    std::ostringstream out;
    train::Progress progress(0, out);
    trainer.fit(train_set, test_set, progress);
    w = trainer.model().ptr()->parameters();
  }
  for (size_t i = 0; i < weights[0].size(); ++i) EXPECT_TRUE(torch::equal(weights[0][i], weights[1][i]));
}

TEST(Training, NonFiniteLossStopsWithEpochInTheMessage) {
  const auto train_set = mgpu::testing::pattern_dataset(32, 1);
  auto config = small_config();
  auto bad_mean = torch::full({1, 28, 28}, std::numeric_limits<float>::quiet_NaN());
  train::Trainer trainer(config, small_model(), torch::kCPU, bad_mean);
  std::ostringstream out;
  train::Progress progress(0, out);
  try {
    trainer.fit(train_set, train_set, progress);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite in epoch 1 at step 1"), std::string::npos)
        << e.what();
  }
}

TEST(Training, ProgressBarAndEpochLinesLookLikeKeras) {
  std::ostringstream out1, out2;
  train::Progress bar(1, out1), lines(2, out2);
  train::EpochStats s{3, 1e-3, 63.2, 0.85541, 0.69971, 1.54732, 0.55921};
  lines.epoch_begin(3, 70, 781);
  lines.epoch_end(s);
  EXPECT_EQ(out2.str(),
            "Epoch 3/70 - 63s - loss: 0.8554 - acc: 0.6997 - val_loss: 1.5473 - val_acc: 0.5592\n");
  bar.epoch_begin(3, 70, 781);
  bar.update(390, 0.9, 0.6);
  bar.update(781, 0.86, 0.7);
  bar.evaluating(10000);  // the test set, after the last step
  bar.epoch_end(s);
  const std::string text = out1.str();
  const std::string evaluating = " - evaluating 10000 test images...";
  const auto at = text.find(evaluating);
  ASSERT_NE(at, std::string::npos) << text;
  const auto start = text.rfind('\r', at) + 1;
  const auto line = text.substr(start, at + evaluating.size() - start);
  EXPECT_EQ(line.rfind("781/781 [==============================] - ", 0), 0u) << line;
  // The epoch's line overwrites it: blanks to the end of the longer line it replaces.
  const auto last = text.substr(text.rfind('\r') + 1);
  EXPECT_GE(last.size(), line.size() + 1) << text;
  EXPECT_EQ(text.rfind("Epoch 3/70\n", 0), 0u) << text;
  EXPECT_NE(text.find("\r390/781 [=============>................] - "), std::string::npos) << text;
  EXPECT_NE(text.find("ETA: "), std::string::npos) << text;
  EXPECT_NE(text.find("781/781 [==============================] - 63s 81ms/step - loss: 0.8554"),
            std::string::npos)
      << text;
}

TEST(Training, AWholeRunLeavesHistorySummaryWeightsAndPlot) {
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 20);
  train::TrainConfig config;
  config.data.dataset = "cifar10";
  config.data.data_dir = (tmp.path() / "data").string();
  config.data.limit_train = 64;
  config.data.limit_test = 16;
  config.batch_per_device = 32;
  config.epochs = 2;
  config.threads = 2;
  config.verbose = 2;
  config.out_dir = (tmp.path() / "run").string();
  std::ostringstream out;
  const auto result = app::run_training(config, out);
  ASSERT_EQ(result.history.size(), 2u);
  for (const char* name : {"history.csv", "summary.json", "model.pt", "mean.pt"}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(tmp.path() / "run" / name)) << name;
  }
  std::string why;
  if (train::can_plot(&why)) {
    EXPECT_GT(std::filesystem::file_size(tmp.path() / "run" / "plot.png"), 1000u);
  }
  for (const auto& name : mgpu::testing::list_dir(tmp.path() / "run")) {
    EXPECT_NE(std::filesystem::path(name).extension(), ".tmp") << name;
  }
  EXPECT_EQ(train::read_history_csv(tmp.path() / "run" / "history.csv").size(), 2u);
  EXPECT_NE(out.str().find("Epoch 2/2 - "), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("1651114 trainable parameters"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("total wall time"), std::string::npos);
  // The weights file describes itself and loads back into the same model.
  const auto w = train::load_weights(tmp.path() / "run", torch::kCPU);
  EXPECT_EQ(w.model, "minigooglenet");
  EXPECT_EQ(w.dataset, "cifar10");
  EXPECT_EQ(w.class_names.at(3), "cat");
  EXPECT_EQ(w.shape.classes, static_cast<int64_t>(w.class_names.size()));
  EXPECT_EQ(models::count_parameters(*w.module.ptr()), 1651114);
  std::ifstream in(tmp.path() / "run" / "mean.pt", std::ios::binary);
  const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const torch::Tensor mean = torch::pickle_load(bytes).toTensor();  // as export's NAME.mean.pt
  EXPECT_TRUE(torch::equal(w.mean, mean)) << "the weights file holds the run's mean image";
}

TEST(Training, DeterministicSwitchesLibTorchsKernelChoice) {
  auto& context = at::globalContext();
  mgpu::train::set_deterministic(true);
  EXPECT_TRUE(context.deterministicCuDNN());
  EXPECT_FALSE(context.benchmarkCuDNN());
  EXPECT_TRUE(context.deterministicAlgorithms());
  EXPECT_FALSE(context.deterministicAlgorithmsWarnOnly());
  EXPECT_STREQ(std::getenv("CUBLAS_WORKSPACE_CONFIG"), ":4096:8");
  // A kernel without a deterministic implementation (put_ without accumulation, even on the
  // CPU) stops the run with a message naming it and the flag, not a warning.
  auto x = torch::zeros({5});
  try {
    x.put_(torch::tensor({0, 1}), torch::tensor({1.0f, 2.0f}), /*accumulate=*/false);
    ADD_FAILURE() << "a non-deterministic kernel ran under --deterministic";
  } catch (const c10::Error& e) {
    const std::string message = mgpu::train::explain_kernel_error(e);
    EXPECT_NE(message.find("--deterministic: the kernel put_ has no deterministic "
                           "implementation"),
              std::string::npos)
        << message;
  }
  mgpu::train::set_deterministic(false);
  EXPECT_FALSE(context.deterministicCuDNN());
  EXPECT_FALSE(context.deterministicAlgorithms());
}

// The tests' SmallNet pools with means over adaptive pooling's windows (deterministic on a
// GPU): the same values as adaptive_avg_pool2d, for the sizes the tests use.
TEST(Training, TheTestNetsPoolIsAdaptiveAveragePooling) {
  for (int64_t size : {26, 30, 7}) {
    const auto x = torch::randn({2, 3, size, size});
    EXPECT_TRUE(torch::allclose(mgpu::testing::SmallNetImpl::pool_4x4(x),
                                torch::adaptive_avg_pool2d(x, {4, 4}), 1e-6, 1e-6))
        << size;
  }
}

TEST(Training, AFractionalEpochCountEndsPartWayThroughTheLastEpoch) {
  // 4 steps an epoch, --epochs 2.3: ceil(9.2) = 10 steps, the third epoch 2 of them; the
  // per-step piecewise rate reaches the end of its knots (0 at t = 1) only at 2.3 epochs.
  torch::set_num_threads(1);
  const auto& d = mgpu::testing::stripes();  // 48 images, batch 12
  auto c = mgpu::testing::stripes_config();
  c.batch_per_device = 12;
  c.epochs = 2.3;
  c.schedule = "piecewise";
  c.lr_knots = {{0, 1}, {1, 0}};
  train::Trainer trainer(c, torch::nn::AnyModule(mgpu::testing::SmallNet()), torch::kCPU,
                         data::mean_image(d.images));
  ASSERT_EQ(d.size() / trainer.global_batch(), 4);
  std::ostringstream out;
  train::Progress quiet(0, out);
  const auto history = trainer.fit(d, d, quiet);
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(trainer.step_times().step_ms.size(), 2u) << "steps of the last epoch";
  EXPECT_NEAR(history[2].lr, c.lr * (1 - 2.0 / 2.3), 1e-12);  // at its first step, t = 8 / 9.2
}
