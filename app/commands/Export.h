// Export to Python: a weights file as a PyTorch state_dict that torch.load reads.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "train/files/Weights.h"

namespace mgpu::app {

/// Every parameter and buffer of module by its dotted name ("layer1.0.conv1.weight"), in the
/// order PyTorch's Module.state_dict() gives: module by module, depth first, each module's
/// parameters before its buffers.
std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& module);

/// The files export_weights writes for `to`: the state_dict (to itself), the mean image
/// (<to without .pt>.mean.pt) and a description (<to without .pt>.json).
struct ExportFiles {
  std::filesystem::path state_dict, mean, about;
};
ExportFiles export_files(const std::filesystem::path& to);

/// Writes w's state_dict as a dict of CPU tensors (what torch::pickle_save writes, less its
/// type tags, so that Python's torch.load reads it with weights_only=True), the mean image
/// [C, H, W] float as a tensor, and JSON naming the model, input shape, classes and preprocessing.
/// Each file is written atomically; if one fails, none is left.
ExportFiles export_weights(const train::Weights& w, const std::filesystem::path& to);

/// mgpu export's flags.
struct ExportConfig {
  std::string weights;  // a weights file (a run's model.pt) or a run directory
  std::string to;       // the state_dict file to write
  int64_t threads = 0;  // LibTorch CPU threads; 0: all cores (export works on the CPU)
};

/// The whole command: loads weights (a file or run directory), exports to `to`, and prints
/// the files written.
void run_export(const std::string& weights, const std::string& to, std::ostream& out);

}  // namespace mgpu::app
