// Fidelity to the recipe, step by step: mgpu's trainer and the PyTorch port of MiniGoogLeNet
// (python/mgpu_models.py, torch.optim.SGD) take the same SGD steps (tests/check_steps.py).
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "Fixtures.h"
#include "app/commands/Export.h"
#include "data/Preprocess.h"
#include "models/MiniGoogLeNet.h"
#include "train/Trainer.h"

using namespace mgpu;
namespace fs = std::filesystem;
using mgpu::testing::write_raw;


// From the same initial weights, 20 full-batch steps (one per epoch, so the per-epoch rate
// changes every step) without augmentation or dropout: the same weights and batch-norm
// statistics to float rounding. It fails if, say, the momentum form, the batch-norm momentum
// or the schedule changes on either side.
TEST(Fidelity, TwentyStepsEqualThePyTorchPortsSteps) {
  torch::set_num_threads(1);
  mgpu::testing::TempDir tmp;
  const auto d = mgpu::testing::pattern_dataset(16, 1, {/*classes=*/2, 1, 28, 1, 40});
  train::TrainConfig c;
  c.batch_per_device = 16;  // the whole set: every step sees every image
  c.epochs = 20;
  c.lr = 5e-3;  // the tutorial's
  c.augment = false;
  c.shuffle = false;  // the same order: batch-norm sums then round alike on both sides
  c.verbose = 0;
  const models::ModelShape shape{1, 28, 28, 2};
  torch::manual_seed(3);
  torch::nn::AnyModule model(
      models::MiniGoogLeNet(models::MiniGoogLeNetOptions().in_channels(1).num_classes(2).dropout(0)));
  const auto mean = data::mean_image(d.images);
  auto weights = [&](torch::nn::AnyModule m) {
    return train::Weights{"minigooglenet", shape, "patterns", {"a", "b"}, mean, m};
  };
  app::export_weights(weights(model.clone()), tmp.path() / "initial.pt");
  train::Trainer trainer(c, model, torch::kCPU, mean);
  std::ostringstream out;
  train::Progress quiet(0, out);
  trainer.fit(d, d, quiet);
  app::export_weights(weights(trainer.model()), tmp.path() / "final.pt");
  write_raw(tmp.path() / "images.bin", d.images);
  write_raw(tmp.path() / "labels.bin", d.labels.to(torch::kInt64));
  std::ofstream(tmp.path() / "steps.json")
      << nlohmann::json{{"lr", c.lr}, {"momentum", c.momentum}, {"power", c.power},
                        {"epochs", c.epochs}, {"shape", d.images.sizes().vec()}, {"classes", 2}}
             .dump();

  const auto log = tmp.path() / "check.log";
  const int status = std::system(fmt::format("{} {}/tests/check_steps.py {} > {} 2>&1",
                                             mgpu::testing::kPython, mgpu::testing::kSourceDir,
                                             tmp.path().string(), log.string())
                                     .c_str());
  std::ifstream in(log);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 0) << text;
  std::cout << text;
}
