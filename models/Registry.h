// The model registry: every model mgpu can train, by name, from one table (models/Models.def).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mgpu::models {

/// What a model is built for: input images [channels, height, width] and the class count.
struct ModelShape {
  int64_t channels = 3;
  int64_t height = 32;
  int64_t width = 32;
  int64_t classes = 10;
};

/// Builds a freshly initialised model whose forward maps [B, channels, height, width] float
/// to [B, classes] logits. Its module must be Cloneable (replicas are deep copies). Throws
/// data::InputError if the model cannot take that shape (for example, too small an image).
using ModelFactory = std::function<torch::nn::AnyModule(const ModelShape&)>;

/// A data-dependent initialisation, run once on a fresh model (not on a resumed one) before
/// training: images are the first training images (at most kInitImages), normalised as the
/// training steps normalise them, float32 [N, C, H, W] on the CPU.
using DataInit = std::function<void(torch::nn::AnyModule&, const torch::Tensor& images)>;
inline constexpr int64_t kInitImages = 5000;

struct ModelEntry {
  std::string name;         // what --model takes
  std::string description;  // one line for `mgpu models`
  ModelFactory make;
  /// The flags `mgpu train --model NAME` trains with unless the command line gives them
  /// itself, each one word "--flag=value" or "--flag"; empty: the tutorial's recipe.
  std::vector<std::string> recipe;
  DataInit init;  // empty: none
};

/// Every registered model, in the table's order.
const std::vector<ModelEntry>& registered_models();

/// The registered names, in the table's order.
std::vector<std::string> model_names();

/// The entry called name; throws data::InputError listing the known names if there is none.
const ModelEntry& find_model(const std::string& name);

/// find_model(name).make(shape).
torch::nn::AnyModule make_model(const std::string& name, const ModelShape& shape);

/// `mgpu models`: one line per model with its name, trainable parameters at shape, and
/// description.
std::string models_table(const ModelShape& shape);

/// The value a model's recipe gives flag ("tta" for "--tta=mirror"), or "" if it gives none.
std::string recipe_value(const ModelEntry& entry, const std::string& flag);

/// A recipe's text split into its words ("--epochs=9.9 --nesterov" -> both).
std::vector<std::string> recipe_words(const std::string& text);

/// Number of trainable parameter elements.
int64_t count_parameters(const torch::nn::Module& module);

/// Floating-point operations of one forward pass of one image of shape through model, in eval
/// mode on the CPU, as PyTorch's profiler counts them (2 per multiply-add of convolutions and
/// matrix products, 1 per element-wise multiply or add). A training step is about 3 times that.
double forward_flops(torch::nn::AnyModule& model, const ModelShape& shape);

}  // namespace mgpu::models
