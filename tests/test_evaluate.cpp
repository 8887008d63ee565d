// mgpu evaluate and mgpu predict: metrics and confusion matrix from a model whose answers are
// known, the report and CSV, prediction on image files with the mean applied, and both
// commands through the binary on a freshly trained run.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <sstream>
#include <sys/wait.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "Fixtures.h"
#include "data/Datasets.h"
#include "app/commands/Evaluate.h"
#include "train/report/Plot.h"
#include "app/commands/Predict.h"
#include "train/files/Weights.h"

#include <stb_image_write.h>

using namespace mgpu;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;
using mgpu::testing::read_text;

namespace {

// Answers class floor(mean pixel / 100), as logits 5 for that class and 0 for the others.
class ByBrightnessImpl : public torch::nn::Cloneable<ByBrightnessImpl> {
 public:
  explicit ByBrightnessImpl(int64_t classes) : classes_(classes) {}
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& x) {
    const auto k = (x.mean({1, 2, 3}) / 100).floor().clamp(0, classes_ - 1).to(torch::kInt64);
    return torch::one_hot(k, classes_).to(torch::kFloat32) * 5;
  }

 private:
  int64_t classes_;
};
TORCH_MODULE(ByBrightness);

// Grey 3x8x8 images of the given values.
torch::Tensor flat_images(const std::vector<int>& values) {
  std::vector<torch::Tensor> images;
  for (int v : values) images.push_back(torch::full({3, 8, 8}, v, torch::kUInt8));
  return torch::stack(images);
}

int run(const std::string& args, const fs::path& log) {
  const int status = std::system(
      fmt::format("{} {} > {} 2>&1", mgpu::testing::kMgpuBinary, args, log.string()).c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(Evaluate, CountsEveryPairOfTrueAndPredictedClass) {
  // Predictions 0, 0, 1, 1, 2, 2 against labels 0, 0, 1, 0, 2, 1; class 3 has no images.
  const data::Dataset d{flat_images({50, 50, 150, 150, 250, 250}),
                        torch::tensor({0, 0, 1, 0, 2, 1})};
  torch::nn::AnyModule model(ByBrightness(4));
  const auto e = app::evaluate_model(model, torch::zeros({3, 8, 8}), d, 4, /*batch=*/4);
  const auto expected =
      torch::tensor({2, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0}).view({4, 4});
  EXPECT_TRUE(torch::equal(e.confusion, expected)) << e.confusion;
  EXPECT_EQ(e.images, 6);
  EXPECT_DOUBLE_EQ(e.acc, 4.0 / 6);
  // Cross-entropy of logits (5, 0, 0, 0): log(e^5 + 3) when right, that plus 5 when wrong.
  const double right = std::log(std::exp(5.0) + 3) - 5, wrong = std::log(std::exp(5.0) + 3);
  EXPECT_NEAR(e.loss, (4 * right + 2 * wrong) / 6, 1e-6);
  const auto acc = e.class_accuracy();
  EXPECT_DOUBLE_EQ(acc[0], 2.0 / 3);
  EXPECT_DOUBLE_EQ(acc[1], 1.0 / 2);
  EXPECT_DOUBLE_EQ(acc[2], 1.0);
  EXPECT_TRUE(std::isnan(acc[3]));
}

// mgpu evaluate on a terminal: a bar of the images done, ending on its own line with all.
TEST(Evaluate, DrawsABarOfTheImagesDoneWhenGivenAStream) {
  const data::Dataset d{flat_images({50, 50, 150, 150, 250, 250}),
                        torch::tensor({0, 0, 1, 0, 2, 1})};
  torch::nn::AnyModule model(ByBrightness(4));
  std::ostringstream bar;
  const auto e = app::evaluate_model(model, torch::zeros({3, 8, 8}), d, 4, /*batch=*/4,
                                     train::Tta::kNone, "off", false, &bar);
  EXPECT_EQ(e.images, 6);
  const std::string text = bar.str();
  EXPECT_EQ(text.rfind("\revaluating: "), text.find_last_of('\r')) << text;
  EXPECT_NE(text.find("\revaluating: 6/6 images [" + std::string(30, '=') + "]\n"),
            std::string::npos)
      << text;
}

TEST(Evaluate, TheMeanImageIsSubtractedFirst) {
  const data::Dataset d{flat_images({150, 150}), torch::tensor({0, 0})};
  torch::nn::AnyModule model(ByBrightness(3));
  // 150 - 100 = 50: class 0 for both.
  EXPECT_DOUBLE_EQ(app::evaluate_model(model, torch::full({3, 8, 8}, 100.0), d, 3, 256).acc, 1.0);
  EXPECT_DOUBLE_EQ(app::evaluate_model(model, torch::zeros({3, 8, 8}), d, 3, 256).acc, 0.0);
}

TEST(Evaluate, ReportAndCsvSpellOutTheMatrix) {
  const data::Dataset d{flat_images({50, 50, 150, 250}), torch::tensor({0, 1, 1, 2})};
  torch::nn::AnyModule model(ByBrightness(3));
  const auto e = app::evaluate_model(model, torch::zeros({3, 8, 8}), d, 3, 256);
  const std::vector<std::string> names = {"cat", "dog", "ship"};
  EXPECT_EQ(app::confusion_csv(e, names),
            "true\\predicted,cat,dog,ship\ncat,1,0,0\ndog,1,1,0\nship,0,0,1\n");
  const auto report = app::evaluation_report(e, names);
  EXPECT_NE(report.find("accuracy 0.7500 (3 of 4 images)"), std::string::npos) << report;
  EXPECT_NE(report.find("dog      0.5000       2"), std::string::npos) << report;
  EXPECT_NE(report.find("dog        1     1     0"), std::string::npos) << report;
}

TEST(Predict, ImagesOfAnySizeGetTheirClassWithTheMeanApplied) {
  TempDir tmp;
  train::Weights w{"by-brightness",
                   {3, 8, 8, 3},
                   "test",
                   {"dark", "middle", "bright"},
                   torch::zeros({3, 8, 8}),
                   torch::nn::AnyModule(ByBrightness(3))};
  std::vector<std::string> files;
  for (auto [value, side] : {std::pair{50, 8}, {150, 64}, {250, 5}}) {
    const std::vector<uint8_t> px(static_cast<size_t>(side * side * 3),
                                  static_cast<uint8_t>(value));
    files.push_back((tmp.path() / fmt::format("v{}.png", value)).string());
    ASSERT_TRUE(stbi_write_png(files.back().c_str(), side, side, 3, px.data(), side * 3));
  }
  const auto predictions = app::predict_files(w, files, 2);
  ASSERT_EQ(predictions.size(), 3u);
  const double p_top = std::exp(5.0) / (std::exp(5.0) + 2), p_other = 1 / (std::exp(5.0) + 2);
  for (int64_t k = 0; k < 3; ++k) {
    const auto& p = predictions[static_cast<size_t>(k)];
    EXPECT_EQ(p.image, files[static_cast<size_t>(k)]);
    ASSERT_EQ(p.top.size(), 2u);
    EXPECT_EQ(p.top[0].first, k);
    EXPECT_NEAR(p.top[0].second, p_top, 1e-9);
    EXPECT_NEAR(p.top[1].second, p_other, 1e-9);
  }
  EXPECT_EQ(app::predict_files(w, files, 10)[0].top.size(), 3u) << "at most every class";
  w.mean = torch::full({3, 8, 8}, 100.0);  // now 150 reads as 50
  EXPECT_EQ(app::predict_files(w, {files[1]}, 1)[0].top[0].first, 0);
  // One bad file fails the whole command before any prediction.
  const auto error = mgpu::testing::error_of([&] {
    app::predict_files(w, {files[0], (tmp.path() / "none.png").string()}, 1);
  });
  EXPECT_NE(error.find("none.png"), std::string::npos) << error;
}

TEST(EvaluateBinary, ATrainedRunIsEvaluatedPredictedAndDescribed) {
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 40);
  const auto data_flags =
      fmt::format("--dataset cifar10 --no-download --data-dir {}", (tmp.path() / "data").string());
  const auto run_dir = tmp.path() / "run";
  ASSERT_EQ(run(fmt::format("train --model resnet20 --gpus 0 --threads 2 {} --epochs 1 "
                            "--batch-per-device 20 --verbose 0 --tta mirror --amp bf16 --out-dir {}",
                            data_flags, run_dir.string()),
                tmp.path() / "train.log"),
            0)
      << read_text(tmp.path() / "train.log");

  const auto eval_dir = tmp.path() / "eval";
  ASSERT_EQ(run(fmt::format("evaluate --weights {} --gpus 0 --threads 2 --data-dir {} "
                            "--no-download --out-dir {}",
                            (run_dir / "model.pt").string(), (tmp.path() / "data").string(),
                            eval_dir.string()),
                tmp.path() / "eval.log"),
            0)
      << read_text(tmp.path() / "eval.log");
  // The files agree with an evaluation done here on the same weights and test set.
  auto w = train::load_weights(run_dir, torch::kCPU);
  data::DataConfig dc;
  dc.dataset = "cifar10";
  dc.data_dir = (tmp.path() / "data").string();
  dc.download = false;
  const auto split = data::load_data(dc);
  // Without --tta and --amp, as the run validated (its weights file records it): mirrored, in
  // bfloat16 autocast.
  EXPECT_EQ(w.validation.tta, "mirror");
  EXPECT_EQ(w.validation.amp, "bf16");
  const auto here =
      app::evaluate_model(w.module, w.mean, split.test, 10, 256, train::Tta::kMirror, "bf16");
  const auto json = nlohmann::json::parse(read_text(eval_dir / "evaluation.json"));
  EXPECT_EQ(json["model"], "resnet20");
  EXPECT_EQ(json["images"], 40);
  EXPECT_NEAR(json["accuracy"].get<double>(), here.acc, 1e-12);
  EXPECT_NEAR(json["loss"].get<double>(), here.loss, 1e-5);
  EXPECT_EQ(read_text(eval_dir / "confusion.csv"), app::confusion_csv(here, split.class_names));
  const auto log = read_text(tmp.path() / "eval.log");
  EXPECT_NE(log.find(app::evaluation_report(here, split.class_names)), std::string::npos) << log;
  EXPECT_NE(log.find("test-time augmentation mirror (as the run validated), autocast bf16 (as the "
                     "run validated)"),
            std::string::npos)
      << log;
  EXPECT_EQ(json["tta"], "mirror");
  EXPECT_EQ(json["amp"], "bf16");
  std::string why;
  if (train::can_plot(&why)) {
    EXPECT_GT(fs::file_size(eval_dir / "confusion.png"), 1000u);
  }
  // The run's history's last val_loss and val_acc are what mgpu evaluate gave by default; the
  // views and the autocast each change the logits; `mgpu evaluate --tta` evaluates with the
  // views asked.
  const auto plain = app::evaluate_model(w.module, w.mean, split.test, 10, 256);
  const auto float32 =
      app::evaluate_model(w.module, w.mean, split.test, 10, 256, train::Tta::kMirror);
  std::stringstream history(read_text(run_dir / "history.csv"));
  std::string line, last;
  while (std::getline(history, line)) last = line;
  std::vector<double> cells;
  std::stringstream row(last);
  for (std::string cell; std::getline(row, cell, ',');) cells.push_back(std::stod(cell));
  ASSERT_EQ(cells.size(), 7u) << last;  // epoch,lr,seconds,loss,acc,val_loss,val_acc
  EXPECT_NEAR(cells[5], json["loss"].get<double>(), 1e-5) << last;
  EXPECT_NEAR(cells[6], json["accuracy"].get<double>(), 1e-9) << last;
  EXPECT_GT(std::abs(plain.loss - float32.loss), 1e-6);  // the views changed the logits
  EXPECT_GT(std::abs(here.loss - float32.loss), 1e-6);   // and bfloat16 did
  ASSERT_EQ(run(fmt::format("evaluate --weights {} --gpus 0 --threads 2 --data-dir {} "
                            "--no-download --tta mirror-translate --amp off --out-dir {}",
                            (run_dir / "model.pt").string(), (tmp.path() / "data").string(),
                            (tmp.path() / "tta").string()),
                tmp.path() / "tta.log"),
            0)
      << read_text(tmp.path() / "tta.log");
  const auto translated = app::evaluate_model(w.module, w.mean, split.test, 10, 256,
                                              train::Tta::kMirrorTranslate);
  const auto tta_json = nlohmann::json::parse(read_text(tmp.path() / "tta" / "evaluation.json"));
  EXPECT_EQ(tta_json["tta"], "mirror-translate");
  EXPECT_NEAR(tta_json["accuracy"].get<double>(), translated.acc, 1e-12);
  EXPECT_NEAR(tta_json["loss"].get<double>(), translated.loss, 1e-5);
  EXPECT_NE(read_text(tmp.path() / "tta.log").find("test-time augmentation mirror-translate"),
            std::string::npos);

  // Predict a test image written as a PNG: the probabilities the model gives its pixels.
  const auto image = split.test.images[7];  // [3, 32, 32]
  const auto hwc = image.permute({1, 2, 0}).contiguous();
  const auto png = tmp.path() / "seven.png";
  ASSERT_TRUE(stbi_write_png(png.c_str(), 32, 32, 3, hwc.data_ptr<uint8_t>(), 32 * 3));
  const auto probs = app::class_probabilities(w, image.unsqueeze(0))[0];
  const auto best = probs.argmax().item<int64_t>();
  ASSERT_EQ(
      run(fmt::format("predict --weights {} --gpus 0 --top 1 {}", run_dir.string(), png.string()),
          tmp.path() / "predict.log"),
      0);
  EXPECT_EQ(read_text(tmp.path() / "predict.log"),
            fmt::format("{}: {} {:.4f}\n", png.string(),
                        split.class_names[static_cast<size_t>(best)], probs[best].item<double>()));
}
