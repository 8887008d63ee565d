// state_dict and export_weights: pickled tensors for Python's torch.load.
#include "app/commands/Export.h"

#include <fmt/core.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "app/commands/Command.h"  // defines: CommandSpec, make_command
#include "app/commands/Flags.h"    // defines: get, int_at_least, ...
#include "data/InputError.h"  // defines: InputError
#include "train/Device.h"            // defines: set_threads
#include "train/files/AtomicFile.h"  // defines: write_text_atomically, NewDirectories
#include "train/files/Pickle.h"      // defines: write_pickle

namespace mgpu::app {

using namespace mgpu::train;  // a command is built from the training library's parts
namespace fs = std::filesystem;

std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> entries;
  for (const auto& m : module.named_modules(/*name_prefix=*/"", /*include_self=*/true)) {
    const std::string prefix = m.key().empty() ? "" : m.key() + ".";
    for (const auto& p : m.value()->named_parameters(/*recurse=*/false)) {
      entries.emplace_back(prefix + p.key(), p.value());
    }
    for (const auto& b : m.value()->named_buffers(/*recurse=*/false)) {
      entries.emplace_back(prefix + b.key(), b.value());
    }
  }
  return entries;
}

ExportFiles export_files(const fs::path& to) {
  fs::path stem = to;
  if (stem.extension() == ".pt") stem.replace_extension();
  return {to, fs::path(stem.string() + ".mean.pt"), fs::path(stem.string() + ".json")};
}

ExportFiles export_weights(const Weights& w, const fs::path& to) {
  const ExportFiles files = export_files(to);
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, tensor] : state_dict(*w.module.ptr())) {
    dict.insert(name, tensor.detach().to(torch::kCPU).contiguous().clone());
  }
  const nlohmann::json about = {
      {"model", w.model},
      {"input_shape", {w.shape.channels, w.shape.height, w.shape.width}},
      {"classes", w.class_names},
      {"dataset", w.dataset},
      {"state_dict", files.state_dict.filename().string()},
      {"mean", files.mean.filename().string()},
      {"preprocessing",
       "float pixels 0..255 as [C, H, W] (RGB for 3 channels), minus the mean "
       "image; the model returns logits (softmax for probabilities)"}};
  try {
    write_pickle(files.state_dict, c10::IValue(dict));
    write_pickle(files.mean, c10::IValue(w.mean.detach().to(torch::kCPU).contiguous()));
    write_text_atomically(files.about, about.dump(2) + "\n");
  } catch (...) {
    std::error_code ec;
    for (const auto& f : {files.state_dict, files.mean, files.about}) fs::remove(f, ec);
    throw;
  }
  return files;
}

void run_export(const std::string& weights, const std::string& to, std::ostream& out) {
  const fs::path target(to);
  check_output_file(target, "--to", "model.pt");
  NewDirectories created;  // a refusal or failure leaves no directory it made behind
  if (target.has_parent_path()) created.prepare(target.parent_path(), "--to");
  const Weights w = load_weights(weights, torch::kCPU);
  const ExportFiles files = export_weights(w, target);
  out << fmt::format(
      "exported {} ({}, {} tensors) for Python:\n  {}  state_dict: "
      "torch.load() gives a dict of tensors\n  {}  mean image [{}, {}, {}]\n  {}  "
      "model, input shape, classes, preprocessing\n",
      weights, w.model, state_dict(*w.module.ptr()).size(), files.state_dict.string(),
      files.mean.string(), w.shape.channels, w.shape.height, w.shape.width, files.about.string());
}

namespace {

cxxopts::Options export_options() {
  cxxopts::Options o("mgpu export", "Write trained weights as a PyTorch state_dict for Python "
                                    "(torch.load), with the mean image and a description.");
  o.add_options()
      ("weights", "a weights file (a run's model.pt) or a run directory",
       cxxopts::value<std::string>())
      ("to", "the state_dict file to write, e.g. model.pt (also writes model.mean.pt and "
       "model.json beside it)", cxxopts::value<std::string>())
      ("threads", "LibTorch CPU threads; 0: all cores (export works on the CPU: a state_dict "
       "holds CPU tensors, so it takes no --gpus)",
       cxxopts::value<std::string>()->default_value("0"))
      ("h,help", "show this help");
  return o;
}

}  // namespace

CommandSpec export_command() {
  return {"export", "  mgpu export --weights RUN/model.pt --to model.pt   a state_dict for Python's torch.load\n",
          export_options, [](const cxxopts::ParseResult& r) {
            ExportConfig config;
            config.weights = weights_flag(r, "export");
            if (!r.count("to")) throw data::InputError("mgpu export: give --to, the file to write (e.g. model.pt)");
            config.to = get<std::string>(r, "to");
            config.threads = int_at_least(r, "threads", 0, kMaxThreads);
            return make_command("export", config, [](const ExportConfig& c, std::ostream& out) {
              train::set_threads(c.threads);
              run_export(c.weights, c.to, out);
            });
          }};
}

}  // namespace mgpu::app
