// save_weights / load_weights: the model's own archive beside a JSON description.
#include "train/files/Weights.h"

#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "data/InputError.h"  // defines: InputError
#include "train/files/Archive.h"    // defines: save_archive, load_archive

namespace mgpu::train {
namespace fs = std::filesystem;

void save_weights(const Weights& w, const fs::path& path) {
  const nlohmann::json about = {{"model", w.model},
                                {"shape", {w.shape.channels, w.shape.height, w.shape.width}},
                                {"classes", w.class_names},
                                {"dataset", w.dataset},
                                {"validation",
                                 {{"tta", w.validation.tta},
                                  {"amp", w.validation.amp},
                                  {"channels_last", w.validation.channels_last}}}};
  torch::serialize::OutputArchive archive, module;
  archive.write("about", c10::IValue(about.dump()));
  archive.write("mean", w.mean.to(torch::kCPU, torch::kFloat32));
  w.module.ptr()->save(module);
  archive.write("module", module);
  save_archive(archive, kWeightsFormat, "weights file", path);
}

Weights load_weights(const fs::path& path, const torch::Device& device) {
  const fs::path file = fs::is_directory(path) ? path / "model.pt" : path;
  auto archive = load_archive(file, kWeightsFormat, "weights file", torch::kCPU);
  Weights w;
  try {
    c10::IValue text;
    archive.read("about", text);
    const auto about = nlohmann::json::parse(text.toStringRef());
    w.model = about.at("model").get<std::string>();
    const auto shape = about.at("shape").get<std::vector<int64_t>>();
    w.class_names = about.at("classes").get<std::vector<std::string>>();
    w.dataset = about.at("dataset").get<std::string>();
    if (const auto v = about.find("validation"); v != about.end()) {
      w.validation = {v->at("tta").get<std::string>(), v->at("amp").get<std::string>(),
                      v->at("channels_last").get<bool>()};
    }
    if (shape.size() != 3 || w.class_names.empty()) throw std::invalid_argument("bad shape");
    w.shape = {shape[0], shape[1], shape[2], static_cast<int64_t>(w.class_names.size())};
    archive.read("mean", w.mean);
  } catch (const std::exception& e) {
    throw data::InputError(fmt::format("weights file {}: its description cannot be read ({})",
                                       file.string(), e.what()));
  }
  if (w.mean.sizes() != torch::IntArrayRef{w.shape.channels, w.shape.height, w.shape.width}) {
    throw data::InputError(
        fmt::format("weights file {}: its mean image is {}, expected [{}, {}, {}]", file.string(),
                    c10::str(w.mean.sizes()), w.shape.channels, w.shape.height, w.shape.width));
  }
  try {
    w.module = models::make_model(w.model, w.shape);
  } catch (const data::InputError& e) {
    throw data::InputError(fmt::format("weights file {}: {}", file.string(), e.what()));
  }
  // LibTorch's loader replaces a tensor of another shape without a word: compare after it.
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& t : w.module.ptr()->named_parameters())
    shapes.push_back(t.value().sizes().vec());
  std::string misfit;
  try {
    torch::serialize::InputArchive module;
    archive.read("module", module);
    w.module.ptr()->load(module);
    size_t i = 0;
    for (const auto& t : w.module.ptr()->named_parameters()) {
      if (t.value().sizes().vec() != shapes[i++]) {
        misfit = fmt::format("{} is {}, the model's is {}", t.key(), c10::str(t.value().sizes()),
                             c10::str(c10::IntArrayRef(shapes[i - 1])));
        break;
      }
    }
  } catch (const c10::Error& e) {
    misfit = e.what_without_backtrace();
  }
  if (!misfit.empty()) {
    throw data::InputError(fmt::format("weights file {}: its weights do not fit the {} model: {}",
                                       file.string(), w.model, misfit));
  }
  w.module.ptr()->to(device);
  w.module.ptr()->eval();
  w.mean = w.mean.to(device);
  return w;
}

}  // namespace mgpu::train
