// The registry's table, built from models/Models.def, and lookups by name.
#include "models/Registry.h"

#include <ATen/record_function.h>
#include <torch/csrc/profiler/util.h>

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <sstream>

#include "data/InputError.h"  // defines: InputError

namespace mgpu::models {

// Each model's factory and data initialisation, defined in the model's own file.
#define MGPU_MODEL(name, factory, description, recipe) \
  torch::nn::AnyModule factory(const ModelShape& shape);
#define MGPU_MODEL_INIT(name, init) \
  void init(torch::nn::AnyModule& model, const torch::Tensor& images);
#include "models/Models.def"
#undef MGPU_MODEL
#undef MGPU_MODEL_INIT

std::vector<std::string> recipe_words(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

std::string recipe_value(const ModelEntry& entry, const std::string& flag) {
  const std::string prefix = "--" + flag + "=";
  for (const auto& word : entry.recipe) {
    if (word.rfind(prefix, 0) == 0) return word.substr(prefix.size());
  }
  return "";
}

const std::vector<ModelEntry>& registered_models() {
  static const std::vector<ModelEntry> table = [] {
    std::vector<ModelEntry> entries = {
#define MGPU_MODEL(name, factory, description, recipe) \
  {name, description, factory, recipe_words(recipe), {}},
#define MGPU_MODEL_INIT(name, init)
#include "models/Models.def"
#undef MGPU_MODEL
#undef MGPU_MODEL_INIT
    };
    auto set_init = [&](const std::string& name, DataInit init) {
      for (auto& entry : entries) {
        if (entry.name == name) entry.init = std::move(init);
      }
    };
#define MGPU_MODEL(name, factory, description, recipe)
#define MGPU_MODEL_INIT(name, init) set_init(name, init);
#include "models/Models.def"
#undef MGPU_MODEL
#undef MGPU_MODEL_INIT
    return entries;
  }();
  return table;
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& entry : registered_models()) names.push_back(entry.name);
  return names;
}

const ModelEntry& find_model(const std::string& name) {
  std::string known;
  for (const auto& entry : registered_models()) {
    if (entry.name == name) return entry;
    known += (known.empty() ? "" : ", ") + entry.name;
  }
  throw data::InputError(
      fmt::format("unknown model '{}' (known: {}; see mgpu models)", name, known));
}

torch::nn::AnyModule make_model(const std::string& name, const ModelShape& shape) {
  return find_model(name).make(shape);
}

std::string models_table(const ModelShape& shape) {
  std::string text = fmt::format("{:<16} {:>12}  {}\n", "model", "parameters", "description");
  for (const auto& entry : registered_models()) {
    const auto model = entry.make(shape);
    text += fmt::format("{:<16} {:>12}  {}\n", entry.name, count_parameters(*model.ptr()),
                        entry.description);
    if (!entry.recipe.empty()) {
      text += fmt::format("{:<16} {:>12}  recipe: {}\n", "", "", fmt::join(entry.recipe, " "));
    }
  }
  return text + fmt::format(
                    "(parameters for {}x{}x{} images and {} classes; mgpu train --model NAME "
                    "trains with the model's recipe, the tutorial's where none is shown, and any "
                    "flag given overrides its part)\n",
                    shape.channels, shape.height, shape.width, shape.classes);
}

double forward_flops(torch::nn::AnyModule& model, const ModelShape& shape) {
  // Counted from the operators' input shapes, as torch.profiler's with_flops does.
  thread_local double flops = 0;
  flops = 0;
  const auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback([](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
        const auto args = torch::profiler::impl::saveExtraArgs(fn);
        if (!args.empty()) {
          flops += static_cast<double>(torch::profiler::impl::computeFlops(fn.name(), args));
        }
        return nullptr;
      }).needsInputs(true));
  auto& module = *model.ptr();
  const bool training = module.is_training();
  const auto device = module.parameters().front().device();
  try {
    torch::NoGradGuard no_grad;
    module.eval();
    model.forward(torch::zeros({1, shape.channels, shape.height, shape.width},
                               torch::TensorOptions().device(device)));
  } catch (...) {
    at::removeCallback(handle);
    module.train(training);
    throw;
  }
  at::removeCallback(handle);
  module.train(training);
  return flops;
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) count += p.numel();
  }
  return count;
}

}  // namespace mgpu::models
