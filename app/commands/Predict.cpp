// Prediction on image files: decode, resize, subtract the mean, softmax, top k.
#include "app/commands/Predict.h"

#include <fmt/core.h>

#include <algorithm>

#include "app/commands/Command.h"  // defines: CommandSpec, make_command
#include "app/commands/Flags.h"    // defines: get, int_at_least, ...
#include "data/Image.h"       // defines: load_image
#include "data/InputError.h"  // defines: InputError
#include "data/Preprocess.h"  // defines: subtract_mean
#include "train/Device.h"     // defines: select_devices, set_threads

namespace mgpu::app {

using namespace mgpu::train;  // a command is built from the training library's parts
using data::InputError;

torch::Tensor class_probabilities(Weights& w, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  w.module.ptr()->eval();
  const auto logits = w.module.forward(data::subtract_mean(images.to(w.mean.device()), w.mean));
  return torch::softmax(logits.to(torch::kFloat64), /*dim=*/1).cpu();  // [N, K]
}

std::vector<Prediction> predict_files(Weights& w, const std::vector<std::string>& files,
                                      int64_t top) {
  std::vector<torch::Tensor> images;  // all decoded first: a bad file fails before any work
  for (const auto& file : files) {
    images.push_back(data::load_image(file, w.shape.channels, w.shape.height, w.shape.width));
  }
  const auto probs = class_probabilities(w, torch::stack(images));
  const auto k = std::min<int64_t>(top, probs.size(1));
  const auto [values, indices] = probs.topk(k, /*dim=*/1);
  std::vector<Prediction> predictions;
  for (size_t i = 0; i < files.size(); ++i) {
    Prediction p{files[i], {}};
    const auto row = static_cast<int64_t>(i);
    for (int64_t j = 0; j < k; ++j) {
      p.top.emplace_back(indices[row][j].item<int64_t>(), values[row][j].item<double>());
    }
    predictions.push_back(std::move(p));
  }
  return predictions;
}

void run_predict(const PredictConfig& config, std::ostream& out) {
  set_threads(config.threads);
  const torch::Device device = select_devices(config.gpus, 1).front();
  Weights w = load_weights(config.weights, device);
  for (const auto& p : predict_files(w, config.images, config.top)) {
    std::string line = p.image + ":";
    for (size_t j = 0; j < p.top.size(); ++j) {
      line += fmt::format("{} {} {:.4f}", j ? "," : "",
                          w.class_names[static_cast<size_t>(p.top[j].first)], p.top[j].second);
    }
    out << line << "\n";
  }
}

namespace {

cxxopts::Options predict_options() {
  cxxopts::Options o("mgpu predict", "Top classes of images (PNG, JPEG, BMP, ...; any size, "
                                     "resized to the model's input) under trained weights.");
  o.positional_help("IMAGE...");
  add_weights_flags(o);
  o.add_options()
      ("top", "classes shown per image", cxxopts::value<std::string>()->default_value("3"))
      ("images", "image files", cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"images"});
  return o;
}

PredictConfig parse_predict(const cxxopts::ParseResult& r) {
  PredictConfig c;
  c.weights = weights_flag(r, "predict");
  c.gpus = gpus_flag(r, 1);
  c.threads = int_at_least(r, "threads", 0, kMaxThreads);
  c.top = int_at_least(r, "top", 1, kMaxBatch);
  if (!r.count("images")) throw InputError("mgpu predict: name one or more image files");
  c.images = get<std::vector<std::string>>(r, "images");
  return c;
}

}  // namespace

CommandSpec predict_command() {
  return {"predict", "  mgpu predict --weights RUN/model.pt IMAGE...   top classes of PNG/JPEG images\n",
          predict_options, [](const cxxopts::ParseResult& r) {
            return make_command("predict", parse_predict(r), [](const PredictConfig& c, std::ostream& out) {
              run_predict(c, out);
            });
          }};
}

}  // namespace mgpu::app
