// Device selection from --gpus, and a readable description of the chosen device.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "train/TrainConfig.h"

namespace mgpu::train {

/// One device per replica: cuda:0 .. cuda:G-1 for --gpus G, else cpu_replicas times the CPU.
/// Throws data::InputError when fewer GPUs are visible than asked for.
std::vector<torch::Device> select_devices(int64_t gpus, int64_t cpu_replicas);

/// "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB)".
std::string describe_device(const torch::Device& device);

/// Deterministic kernels on (cuDNN's deterministic algorithms, no cuDNN autotuning, LibTorch's
/// deterministic implementations, and an error from any kernel that has none; cuBLAS's fixed
/// workspace) or back to LibTorch's defaults. Call before the first CUDA work.
void set_deterministic(bool on);

/// Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX-BF16, from /proc/cpuinfo),
/// with which --amp bf16 is much faster than float32 on the CPU.
bool cpu_has_bf16();

/// The message for a LibTorch error: for a kernel refused by --deterministic, one that names
/// the kernel and the flag; any other error's own message.
std::string explain_kernel_error(const c10::Error& error);

/// A run's global kernel choices, before its first CUDA work: deterministic kernels if
/// config.deterministic (set_deterministic), else cuDNN autotuning if config.cudnn_benchmark;
/// TF32 tensor cores for float32 convolutions and matmuls if config.tf32.
void configure_kernels(const TrainConfig& config);

/// Sets LibTorch's intra-op thread count (0: all cores) and returns the count in force.
int64_t set_threads(int64_t threads);

}  // namespace mgpu::train
