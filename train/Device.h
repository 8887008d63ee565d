// Device selection from --gpus, and a readable description of the chosen device.
#pragma once

#include <torch/torch.h>

#include <string>

namespace mgpu::train {

/// --gpus 0: the CPU; --gpus 1: cuda:0. Throws data::InputError when the GPUs asked for are
/// not visible, or for more than one GPU (the data-parallel trainer is a separate mode).
torch::Device select_device(int64_t gpus);

/// "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB)".
std::string describe_device(const torch::Device& device);

/// Sets LibTorch's intra-op thread count (0: all cores) and returns the count in force.
int64_t set_threads(int64_t threads);

}  // namespace mgpu::train
