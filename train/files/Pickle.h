// Files that Python's torch.load reads as they are: pickled tensors and dicts of them.
#pragma once

#include <ATen/core/ivalue.h>

#include <filesystem>

namespace mgpu::train {

/// Writes value (a tensor, or a dict of them) as torch.save would, atomically
/// (write_atomically), so that torch.load(path) reads it with PyTorch's default
/// weights_only=True; LibTorch reads it back with torch::pickle_load. Throws
/// std::runtime_error naming the path.
void write_pickle(const std::filesystem::path& path, const c10::IValue& value);

}  // namespace mgpu::train
