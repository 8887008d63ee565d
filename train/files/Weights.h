// Weights files (a run's model.pt): a trained model with everything needed to use it, namely
// its registry name, input shape, classes, data set and training mean image.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "models/Registry.h"

namespace mgpu::train {

/// How a run validated its model, so that mgpu evaluate repeats its figures: test-time
/// augmentation (train/Tta.h), autocast (--amp off, bf16, fp16) and memory format. tta and amp
/// are empty in a file written before they were recorded.
struct Validation {
  std::string tta, amp;
  bool channels_last = false;
};

struct Weights {
  std::string model;                     // registry name (models/Models.def)
  models::ModelShape shape;              // input [C, H, W] and class count
  std::string dataset;                   // what it was trained on
  std::vector<std::string> class_names;  // shape.classes names
  torch::Tensor mean;                    // [C, H, W] float, pixel units (0..255)
  torch::nn::AnyModule module;           // the trained model
  Validation validation = {};
};

/// The mark save_archive gives a weights file (train/Archive.h).
inline const char* kWeightsFormat = "mgpu-weights-1";

/// Writes w to path atomically, with a checksum (train/Archive.h).
void save_weights(const Weights& w, const std::filesystem::path& path);

/// Reads a weights file (or <dir>/model.pt if path is a run directory), rebuilding the model
/// from the registry onto device, in eval mode. Throws data::InputError naming the file and
/// what is wrong with it (missing, damaged, not a weights file, an unknown model).
Weights load_weights(const std::filesystem::path& path, const torch::Device& device);

}  // namespace mgpu::train
