// Evaluation of a weights file on a test set: metrics, report, CSV, JSON and heat map.
#include "app/commands/Evaluate.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <optional>
#include <limits>
#include <nlohmann/json.hpp>

#include "app/commands/Command.h"  // defines: CommandSpec, make_command
#include "app/commands/Flags.h"    // defines: get, int_at_least, ...
#include "data/InputError.h"  // defines: InputError
#include "data/TextBar.h"     // defines: TextBar
#include "data/Preprocess.h"  // defines: subtract_mean
#include "models/Registry.h"  // defines: find_model, recipe_value
#include "train/Device.h"     // defines: select_devices, set_threads, describe_device
#include "train/Precision.h"  // defines: AutocastGuard, in_memory_format
#include "train/Tta.h"        // defines: tta_logits, parse_tta, tta_name
#include "train/files/AtomicFile.h"  // defines: write_text_atomically, NewDirectories
#include "train/report/Plot.h"       // defines: can_plot, plot_confusion
#include "train/files/Weights.h"    // defines: load_weights

namespace mgpu::app {

using namespace mgpu::train;  // a command is built from the training library's parts
namespace fs = std::filesystem;

std::vector<double> Evaluation::class_accuracy() const {
  std::vector<double> acc;
  for (int64_t k = 0; k < confusion.size(0); ++k) {
    const auto total = confusion[k].sum().item<int64_t>();
    acc.push_back(total == 0 ? std::numeric_limits<double>::quiet_NaN()
                             : static_cast<double>(confusion[k][k].item<int64_t>()) /
                                   static_cast<double>(total));
  }
  return acc;
}

Evaluation evaluate_model(torch::nn::AnyModule& model, const torch::Tensor& mean,
                          const data::Dataset& dataset, int64_t classes, int64_t batch,
                          train::Tta tta, const std::string& amp, bool channels_last,
                          std::ostream* progress) {
  std::optional<data::TextBar> bar;
  if (progress) bar.emplace(*progress, "evaluating");
  torch::NoGradGuard no_grad;
  model.ptr()->eval();
  const auto dev = mean.device();
  auto loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(dev));
  auto pairs =
      torch::zeros({classes * classes}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  for (int64_t start = 0; start < dataset.size(); start += batch) {
    const int64_t len = std::min(batch, dataset.size() - start);
    const auto images = dataset.images.narrow(0, start, len).to(dev);      // [B, C, H, W] uint8
    const auto labels = dataset.labels.narrow(0, start, len).to(dev);      // [B]
    const auto logits = train::tta_logits(  // [B, K]
        [&](const torch::Tensor& x) {
          train::AutocastGuard autocast(dev.type(), amp);
          return model.forward(train::in_memory_format(x, channels_last));
        },
        data::subtract_mean(images, mean), tta);
    loss_sum +=
        torch::nn::functional::cross_entropy(
            logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
            .to(torch::kFloat64);
    pairs += torch::bincount(labels * classes + logits.argmax(1), {}, classes * classes);
    if (bar) {
      const int64_t done = start + len;
      bar->draw(static_cast<double>(done) / static_cast<double>(dataset.size()),
                fmt::format("{}/{} images", done, dataset.size()), done == dataset.size());
    }
  }
  Evaluation e;
  e.images = dataset.size();
  e.confusion = pairs.view({classes, classes}).cpu();
  const auto n = static_cast<double>(std::max<int64_t>(1, e.images));
  e.loss = loss_sum.item<double>() / n;
  e.acc = static_cast<double>(e.confusion.trace().item<int64_t>()) / n;
  return e;
}

std::string confusion_csv(const Evaluation& e, const std::vector<std::string>& class_names) {
  std::string csv = "true\\predicted";
  for (const auto& name : class_names) csv += "," + name;
  csv += "\n";
  const auto m = e.confusion.accessor<int64_t, 2>();
  for (size_t k = 0; k < class_names.size(); ++k) {
    csv += class_names[k];
    for (size_t j = 0; j < class_names.size(); ++j) csv += fmt::format(",{}", m[k][j]);
    csv += "\n";
  }
  return csv;
}

std::string evaluation_report(const Evaluation& e, const std::vector<std::string>& class_names) {
  std::string text = fmt::format("test loss {:.4f}, accuracy {:.4f} ({} of {} images)\n", e.loss,
                                 e.acc, e.confusion.trace().item<int64_t>(), e.images);
  const auto acc = e.class_accuracy();
  const auto m = e.confusion.accessor<int64_t, 2>();
  size_t width = 5;
  for (const auto& name : class_names) width = std::max(width, name.size());
  text += fmt::format("\n{:<{}}  accuracy  images\n", "class", width);
  for (size_t k = 0; k < class_names.size(); ++k) {
    int64_t total = 0;
    for (size_t j = 0; j < class_names.size(); ++j) total += m[k][j];
    text +=
        fmt::format("{:<{}}  {:>8}  {:>6}\n", class_names[k], width,
                    std::isnan(acc[k]) ? std::string("-") : fmt::format("{:.4f}", acc[k]), total);
  }
  text += fmt::format(
      "\nconfusion matrix (rows: true class, columns: predicted, in the order "
      "above)\n");
  for (size_t k = 0; k < class_names.size(); ++k) {
    text += fmt::format("{:<{}} ", class_names[k], width);
    for (size_t j = 0; j < class_names.size(); ++j) text += fmt::format(" {:>5}", m[k][j]);
    text += "\n";
  }
  return text;
}

namespace {

// Without --tta and --amp, as the run validated (its weights file says), so that the figures
// are the run's own; for a file that does not say, the model's recipe's augmentation. Sets
// config's tta and amp and returns the line that says what was chosen and why.
std::string choose_validation(EvaluateConfig& config, const train::Weights& w,
                              const torch::Device& device) {
  const train::Validation& run = w.validation;
  std::string tta_from = "--tta", amp_from = "--amp";
  if (config.tta.empty()) {
    const std::string recipe_tta = models::recipe_value(models::find_model(w.model), "tta");
    config.tta = !run.tta.empty() ? run.tta : !recipe_tta.empty() ? recipe_tta : "none";
    tta_from = !run.tta.empty()       ? "as the run validated"
               : !recipe_tta.empty() ? "the recipe's"
                                     : "the default";
  }
  if (config.amp.empty()) {
    config.amp = run.amp.empty() ? "off" : run.amp;
    amp_from = run.amp.empty() ? "the default" : "as the run validated";
    // float16 is a GPU's precision: on the CPU its convolutions are ~135x slower (README), and
    // the figures would be the run's only to rounding anyway.
    if (config.amp == "fp16" && !device.is_cuda()) {
      config.amp = "off";
      amp_from = "the run's fp16 is for GPUs; --amp fp16 to use it on the CPU";
    }
  }
  return fmt::format("test-time augmentation {} ({}), autocast {} ({}){}", config.tta, tta_from,
                     config.amp, amp_from, run.channels_last ? ", channels-last" : "");
}

}  // namespace

void run_evaluate(const EvaluateConfig& given, std::ostream& out) {
  EvaluateConfig config = given;
  const int64_t threads = set_threads(config.threads);
  const torch::Device device = select_devices(config.gpus, 1).front();
  Weights w = load_weights(config.weights, device);
  const fs::path weights_file = fs::is_directory(config.weights)
                                    ? fs::path(config.weights) / "model.pt"
                                    : fs::path(config.weights);
  const fs::path out_dir = !config.out_dir.empty()          ? fs::path(config.out_dir)
                           : weights_file.has_parent_path() ? weights_file.parent_path()
                                                            : fs::path(".");
  NewDirectories created;  // a refusal or failure leaves no directory it made behind
  created.prepare(out_dir, "--out-dir");

  data::DataConfig data_config = config.data;
  if (data_config.dataset == "auto") data_config = data::data_set_named(data_config, w.dataset);
  if (data_config.dataset == "folder" && data_config.image_height == 0) {  // the model's input
    data_config.image_height = w.shape.height;
    data_config.image_width = w.shape.width;
  }
  // Refused before the data is read (an image folder: before its images are decoded).
  data_config.check_shape = [&](int64_t channels, int64_t height, int64_t width, int64_t classes) {
    if (channels != w.shape.channels || height != w.shape.height || width != w.shape.width ||
        classes != static_cast<int64_t>(w.class_names.size())) {
      throw data::InputError(fmt::format(
          "{} ({}x{}x{} images, {} classes) does not fit the weights in {} ({}x{}x{}, {} "
          "classes, trained on {})",
          data_config.dataset, channels, height, width, classes, weights_file.string(),
          w.shape.channels, w.shape.height, w.shape.width, w.class_names.size(), w.dataset));
    }
  };
  const data::DataSplit data = data::load_data(data_config);
  const std::string how = choose_validation(config, w, device);
  out << fmt::format("evaluating {} ({}) on {} from {}, {} test images; device {}, {} threads\n",
                     weights_file.string(), w.model, data.name, data.source, data.test.size(),
                     describe_device(device), threads);
  out << how << "\n";
  const Evaluation e = evaluate_model(w.module, w.mean, data.test, w.shape.classes, config.batch,
                                      train::parse_tta(config.tta), config.amp,
                                      w.validation.channels_last,
                                      isatty(STDERR_FILENO) ? &std::cerr : nullptr);
  out << evaluation_report(e, w.class_names);

  nlohmann::json j = {{"weights", weights_file.string()},
                      {"model", w.model},
                      {"dataset", data.name},
                      {"data_source", data.source},
                      {"images", e.images},
                      {"loss", e.loss},
                      {"accuracy", e.acc},
                      {"tta", config.tta},
                      {"amp", config.amp},
                      {"classes", w.class_names}};
  for (double a : e.class_accuracy()) {
    j["class_accuracy"].push_back(std::isnan(a) ? nlohmann::json(nullptr) : nlohmann::json(a));
  }
  write_text_atomically(out_dir / "evaluation.json", j.dump(2) + "\n");
  write_text_atomically(out_dir / "confusion.csv", confusion_csv(e, w.class_names));
  out << fmt::format("\nwrote {} and {}\n", (out_dir / "evaluation.json").string(),
                     (out_dir / "confusion.csv").string());
  std::string why;
  if (can_plot(&why)) {
    plot_confusion(
        e.confusion, w.class_names, out_dir / "confusion.png",
        fmt::format("{} on {} ({} images), accuracy {:.4f}", w.model, data.name, e.images, e.acc));
    out << fmt::format("heat map: {}\n", (out_dir / "confusion.png").string());
  } else {
    out << fmt::format("no heat map: {}\n", why);
  }
}

namespace {

cxxopts::Options evaluate_options() {
  cxxopts::Options o("mgpu evaluate", "Loss, accuracy, per-class accuracy and confusion matrix "
                                      "of trained weights on a test set.");
  add_weights_flags(o);
  o.add_options()
      ("dataset", "cifar10, cifar100, fashion-mnist, folder, or auto (the one the weights were "
       "trained on, with its labels)", cxxopts::value<std::string>()->default_value("auto"))
      ("labels", "with --dataset cifar100: fine (100 classes) or coarse (20 superclasses)",
       cxxopts::value<std::string>()->default_value("fine"))
      ("data-dir", "folder with the data set's files (as for mgpu train)",
       cxxopts::value<std::string>()->default_value(""))
      ("no-download", "never download CIFAR-10 or CIFAR-100 when its files are not in "
       "--data-dir")
      ("limit-test", "use only the first N test images (0: all)",
       cxxopts::value<std::string>()->default_value("0"))
      ("batch", "images per forward pass", cxxopts::value<std::string>()->default_value("256"))
      ("tta", "test-time augmentation: none, mirror (the mean of the image's and its mirror "
       "image's logits) or mirror-translate (that, averaged with the same for the image moved "
       "one pixel up-left and down-right), as airbench evaluates; default: the run's (its "
       "weights file records how it validated), else the model's recipe's (mgpu models), else "
       "none", cxxopts::value<std::string>())
      ("amp", "autocast the forward passes: off, bf16 or fp16; default: as the run validated "
       "(its weights file records it), else off", cxxopts::value<std::string>())
      ("out-dir", "where evaluation.json, confusion.csv and confusion.png go; default the "
       "weights file's folder", cxxopts::value<std::string>()->default_value(""));
  add_folder_flags(o);
  return o;
}

EvaluateConfig parse_evaluate(const cxxopts::ParseResult& r) {
  EvaluateConfig c;
  c.weights = weights_flag(r, "evaluate");
  c.gpus = gpus_flag(r, 1);
  c.threads = int_at_least(r, "threads", 0, kMaxThreads);
  c.data = data_flags(r);
  c.data.limit_train = 1;  // evaluation reads the training files but uses none of them
  c.batch = int_at_least(r, "batch", 1, kMaxBatch);
  if (r.count("tta")) c.tta = train::tta_name(train::parse_tta(get<std::string>(r, "tta")));
  if (r.count("amp")) {
    c.amp = get<std::string>(r, "amp");
    if (c.amp != "off" && c.amp != "bf16" && c.amp != "fp16") {
      throw data::InputError(fmt::format("--amp '{}': expected off, bf16 or fp16", c.amp));
    }
  }
  c.out_dir = get<std::string>(r, "out-dir");
  return c;
}

}  // namespace

CommandSpec evaluate_command() {
  return {"evaluate", "  mgpu evaluate --weights RUN/model.pt loss, accuracy, per-class accuracy, confusion matrix\n",
          evaluate_options, [](const cxxopts::ParseResult& r) {
            return make_command("evaluate", parse_evaluate(r), [](const EvaluateConfig& c, std::ostream& out) {
              run_evaluate(c, out);
            });
          }};
}

}  // namespace mgpu::app
