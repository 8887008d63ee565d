// airbench94 (models/Airbench94.cpp) and its recipe: the whitening initialisation whitens, the
// shape and trainable parameters are airbench's, `mgpu train --model airbench94` trains with the
// recipe (a flag given overrides its part; summary.json records the resolved recipe; evaluate
// takes its test-time augmentation), a run resumed from a mid-run checkpoint ends bit for bit as
// the uninterrupted run, and the steps equal the Python reference's bit for bit.
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "Fixtures.h"
#include "app/Cli.h"
#include "app/commands/Export.h"
#include "data/Preprocess.h"
#include "models/Registry.h"
#include "train/Trainer.h"
#include "train/files/Checkpoint.h"
#include "train/files/Weights.h"

using namespace mgpu;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;
using mgpu::testing::read_text;
using mgpu::testing::write_raw;

namespace {

nlohmann::json read_json(const fs::path& file) {
  std::ifstream in(file);
  return nlohmann::json::parse(in);
}

}  // namespace

TEST(Airbench94, TheWhiteningInitialisationWhitensTheImagesPatches) {
  // Images with strongly correlated neighbouring pixels and channels: after the data-dependent
  // initialisation the whitening convolution's first half of outputs has about unit covariance
  // (each direction divided by its standard deviation; eps takes a few percent off the weakest
  // ones), the second half is its negative.
  torch::manual_seed(1);
  const auto base = torch::randn({400, 1, 16, 16});
  const auto images = torch::cat({base, base * 0.5 + 0.1 * torch::randn({400, 1, 16, 16}),
                                  torch::randn({400, 1, 16, 16})},
                                 1) *
                      40;  // mgpu's scale: mean-subtracted pixel values
  auto model = models::make_model("airbench94", {3, 16, 16, 10});
  const auto& entry = models::find_model("airbench94");
  ASSERT_TRUE(entry.init);
  entry.init(model, images);
  const auto weight = model.ptr()->named_parameters()["whiten.weight"];
  ASSERT_EQ(weight.sizes(), (torch::IntArrayRef{24, 3, 2, 2}));
  const auto out = torch::conv2d(images, weight);  // [N, 24, 15, 15]
  const auto half = out.narrow(1, 0, 12).transpose(0, 1).reshape({12, -1});
  const auto covariance = half.matmul(half.t()) / static_cast<double>(half.size(1));
  EXPECT_LT((covariance - torch::eye(12)).abs().max().item<double>(), 0.06) << covariance;
  EXPECT_TRUE(torch::equal(weight.narrow(0, 12, 12), -weight.narrow(0, 0, 12)));
  // Without it the filters are far from whitening.
  const auto fresh = models::make_model("airbench94", {3, 16, 16, 10});
  const auto raw = torch::conv2d(images, fresh.ptr()->named_parameters()["whiten.weight"])
                       .narrow(1, 0, 12)
                       .transpose(0, 1)
                       .reshape({12, -1});
  EXPECT_GT((raw.matmul(raw.t()) / static_cast<double>(raw.size(1)) - torch::eye(12))
                .abs()
                .max()
                .item<double>(),
            1.0);
}

TEST(Airbench94, HasAirbenchsTrainableAndFrozenParameters) {
  // airbench94's network: 1,971,352 trained values; frozen are the whitening filters (set from
  // the data) and the batch-norm scales (fixed at 1).
  auto model = models::make_model("airbench94", {});
  EXPECT_EQ(models::count_parameters(*model.ptr()), 1971352);
  for (const auto& p : model.ptr()->named_parameters()) {
    const bool frozen =
        p.key() == "whiten.weight" ||
        (p.key().find("norm") != std::string::npos && p.key().find(".weight") != std::string::npos);
    EXPECT_EQ(p.value().requires_grad(), !frozen) << p.key();
  }
  EXPECT_THROW(models::make_model("airbench94", {3, 8, 8, 10}), data::InputError);
}

TEST(Airbench94Binary, TrainsWithItsRecipeAndAFlagGivenOverridesItsPart) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 60).parent_path();
  const auto r = mgpu::testing::run_mgpu(
      fmt::format("train --model airbench94 --dataset cifar10 --data-dir {} --gpus 0 --threads 1 "
                  "--batch-per-device 64 --epochs 1.5 --limit-test 32 --verbose 2 --out-dir {}",
                  data.string(), (tmp.path() / "run").string()));
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("recipe: airbench94's, --epochs=9.9"), std::string::npos) << r.out;
  const auto summary = read_json(tmp.path() / "run" / "summary.json");
  const auto& c = summary["config"];
  EXPECT_EQ(c["epochs"], 1.5);           // given
  EXPECT_EQ(c["batch_per_device"], 64);  // given
  EXPECT_EQ(c["lr"], 0.00146484375);     // the recipe's from here on
  EXPECT_EQ(c["momentum"], 0.85);
  EXPECT_EQ(c["nesterov"], true);
  EXPECT_EQ(c["schedule"], "piecewise");
  EXPECT_EQ(c["label_smoothing"], 0.2);
  EXPECT_EQ(c["loss_reduction"], "sum");
  EXPECT_EQ(c["lookahead"], 5);
  EXPECT_EQ(c["translate"], 2);
  EXPECT_EQ(c["flip"], "alternating");
  EXPECT_EQ(c["tta"], "mirror-translate");
  EXPECT_EQ(c["amp"], "bf16");
  ASSERT_EQ(c["param_groups"].size(), 2u);
  EXPECT_EQ(c["param_groups"][0]["pattern"], "norm");
  EXPECT_EQ(c["param_groups"][0]["lr"], 64.0);
  EXPECT_EQ(c["param_groups"][1]["epochs"], 3);
  // 300 images, batch 64: 4 steps an epoch, 6 in 1.5 epochs: a second epoch of 2 steps.
  EXPECT_EQ(summary["epochs_completed"], 1.5);
  EXPECT_NE(r.out.find("Epoch 2/2"), std::string::npos) << r.out;
  // mgpu evaluate validates as the recipe does unless told otherwise.
  const auto evaluated = mgpu::testing::run_mgpu(
      fmt::format("evaluate --weights {} --data-dir {} --gpus 0 --threads 1 --limit-test 32",
                  (tmp.path() / "run").string(), data.string()));
  ASSERT_EQ(evaluated.code, 0) << evaluated.err;
  EXPECT_EQ(read_json(tmp.path() / "run" / "evaluation.json")["tta"], "mirror-translate");
  const auto plain = mgpu::testing::run_mgpu(fmt::format(
      "evaluate --weights {} --data-dir {} --gpus 0 --threads 1 --limit-test 32 --tta none",
      (tmp.path() / "run").string(), data.string()));
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_EQ(read_json(tmp.path() / "run" / "evaluation.json")["tta"], "none");
  // The tutorial's models have no recipe: their defaults are the tutorial's.
  EXPECT_TRUE(models::find_model("minigooglenet").recipe.empty());
}

TEST(Airbench94Binary, ResumedFromAMidRunCheckpointItEndsAsTheUninterruptedRun) {
  // Through lookahead averages (every 5 steps), a parameter group whose epochs end, an epoch
  // boundary of the alternating flip and the fractional end: from the checkpoint after step 3
  // the same history and weights, bit for bit. 150 images in batches of 32: 4.7 steps an epoch
  // (bfloat16 on a CPU without its instructions is slow: 300 in batches of 64 took 5 min).
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 30).parent_path();
  const std::string flags = fmt::format(
      "train --model airbench94 --dataset cifar10 --data-dir {} --gpus 0 --threads 1 "
      "--batch-per-device 32 --epochs 2.5 --limit-test 30 --verbose 0 --checkpoint-every 3 "
      "--keep 10 --param-group norm:lr=64:wd=0.02 --param-group whiten.bias:epochs=1",
      data.string());
  const auto whole =
      mgpu::testing::run_mgpu(flags + " --out-dir " + (tmp.path() / "whole").string());
  ASSERT_EQ(whole.code, 0) << whole.err;
  const auto early = train::checkpoint_path(tmp.path() / "whole" / "checkpoints", 0, 3);
  ASSERT_TRUE(fs::exists(early)) << fmt::format(
      "{}", fmt::join(mgpu::testing::list_dir(tmp.path() / "whole" / "checkpoints"), ", "));
  const auto part = mgpu::testing::run_mgpu(flags + " --out-dir " + (tmp.path() / "part").string() +
                                            " --resume " + early.string());
  ASSERT_EQ(part.code, 0) << part.err;
  auto a = train::load_weights(tmp.path() / "whole" / "model.pt", torch::kCPU);
  auto b = train::load_weights(tmp.path() / "part" / "model.pt", torch::kCPU);
  EXPECT_TRUE(mgpu::testing::same_weights(*a.module.ptr(), *b.module.ptr()));
  const auto whole_history = read_text(tmp.path() / "whole" / "history.csv");
  EXPECT_EQ(std::count(whole_history.begin(), whole_history.end(), '\n'), 4);  // header, 3
  const auto summary = read_json(tmp.path() / "whole" / "summary.json");
  EXPECT_EQ(summary["final"], read_json(tmp.path() / "part" / "summary.json")["final"]);
  // The groups given replaced the recipe's two.
  ASSERT_EQ(summary["config"]["param_groups"].size(), 2u);
  EXPECT_EQ(summary["config"]["param_groups"][0]["weight_decay"], 0.02);
  EXPECT_EQ(summary["config"]["param_groups"][1]["epochs"], 1);
}

TEST(Airbench94, StepsEqualThePythonReferencesBitForBit) {
  // The recipe as mgpu train --model airbench94 resolves it (without augmentation and shuffling,
  // smaller batches and epochs), and benchmarks/airbench_reference.py written from the recipe:
  // the same whitening filters from the same images, and from the same weights 18 steps through
  // two lookahead averages, the whitening bias's last epoch and a fractional end, the same
  // weights and batch-norm statistics, bit for bit (bfloat16 autocast, channels-last, 1 thread).
  torch::set_num_threads(1);
  TempDir tmp;
  const auto d = mgpu::testing::pattern_dataset(64, 5, {/*classes=*/4, 3, 32, 1, 60});
  auto c = app::parse_command_line({"mgpu", "train", "--model", "airbench94", "--gpus", "0",
                                    "--threads", "1", "--epochs", "4.5", "--batch-per-device", "16",
                                    "--verbose", "0"})
               .as<train::TrainConfig>();
  c.augment = false;
  c.shuffle = false;
  const models::ModelShape shape{3, 32, 32, 4};
  torch::manual_seed(c.seed);
  auto model = models::make_model("airbench94", shape);
  const auto mean = data::mean_image(d.images);
  models::find_model("airbench94").init(model, data::subtract_mean(d.images, mean));
  auto weights = [&](torch::nn::AnyModule m) {
    return train::Weights{"airbench94", shape, "patterns", {"a", "b", "c", "d"}, mean, m};
  };
  app::export_weights(weights(model.clone()), tmp.path() / "initial.pt");
  train::Trainer trainer(c, model, torch::kCPU, mean);
  std::ostringstream out;
  train::Progress quiet(0, out);
  trainer.fit(d, d.first(16), quiet);
  app::export_weights(weights(trainer.model()), tmp.path() / "final.pt");
  write_raw(tmp.path() / "images.bin", d.images);
  write_raw(tmp.path() / "labels.bin", d.labels.to(torch::kInt64));
  std::ofstream(tmp.path() / "steps.json") << nlohmann::json{
      {"epochs", c.epochs},
      {"batch", c.batch_per_device},
      {"shape", d.images.sizes().vec()},
      {"classes", 4}}.dump();
  const auto log = tmp.path() / "check.log";
  const int status =
      std::system(fmt::format("{} {}/benchmarks/airbench_reference.py steps {} > {} 2>&1",
                              mgpu::testing::kPython, mgpu::testing::kSourceDir,
                              tmp.path().string(), log.string())
                      .c_str());
  const auto text = read_text(log);
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 0) << text;
  EXPECT_NE(text.find("18 steps"), std::string::npos) << text;
  std::cout << text;
}
