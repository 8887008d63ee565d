// The one place that asks CUDA about devices.
#include "train/Device.h"

#include <ATen/cuda/CUDAContext.h>
#include <fmt/core.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "data/InputError.h"

namespace mgpu::train {

std::vector<torch::Device> select_devices(int64_t gpus, int64_t cpu_replicas) {
  if (gpus == 0) return std::vector<torch::Device>(static_cast<size_t>(cpu_replicas), torch::kCPU);
  const int64_t visible = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
  if (visible < gpus) {
    throw data::InputError(fmt::format(
        "--gpus {} asks for {} GPU(s) but {} visible to CUDA{}", gpus, gpus,
        visible == 0 ? "none is" : fmt::format("only {} {}", visible, visible == 1 ? "is" : "are"),
        visible == 0 ? " (use --gpus 0 to run on the CPU)" : ""));
  }
  std::vector<torch::Device> devices;
  for (int64_t g = 0; g < gpus; ++g) devices.emplace_back(torch::kCUDA, g);
  return devices;
}

std::string describe_device(const torch::Device& device) {
  if (!device.is_cuda()) return "cpu";
  const auto* props = at::cuda::getDeviceProperties(device.index());
  return fmt::format("{} ({}, {:.1f} GiB)", device.str(), props->name,
                     static_cast<double>(props->totalGlobalMem) / (1 << 30));
}

void set_deterministic(bool on) {
  // cuBLAS reads this when its handle is made; ":4096:8" is the setting NVIDIA documents for
  // reproducible results.
  if (on) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  auto& context = at::globalContext();
  context.setDeterministicCuDNN(on);
  context.setBenchmarkCuDNN(false);
  // Not warn_only: a kernel without a deterministic implementation stops the run (with
  // explain_kernel_error's message) instead of breaking the bit-for-bit promise with a warning.
  context.setDeterministicAlgorithms(on, /*warn_only=*/false);
}

std::string explain_kernel_error(const c10::Error& error) {
  const std::string what = error.what_without_backtrace();
  const auto at = what.find(" does not have a deterministic implementation");
  if (at == std::string::npos) return what;
  const auto start = what.rfind('\n', at);
  const std::string kernel = what.substr(start == std::string::npos ? 0 : start + 1,
                                         at - (start == std::string::npos ? 0 : start + 1));
  return fmt::format("--deterministic: the kernel {} has no deterministic implementation on "
                     "this device, so the run could not repeat bit for bit; train without "
                     "--deterministic (or with another model or device)",
                     kernel);
}

void configure_kernels(const TrainConfig& config) {
  set_deterministic(config.deterministic);
  auto& context = at::globalContext();
  context.setBenchmarkCuDNN(config.cudnn_benchmark && !config.deterministic);
  const auto precision = config.tf32 ? at::Float32Precision::TF32 : at::Float32Precision::IEEE;
  context.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV, precision);
  context.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, precision);
}

bool cpu_has_bf16() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream flags(line.substr(line.find(':') + 1));
    for (std::string flag; flags >> flag;) {
      if (flag == "avx512_bf16" || flag == "amx_bf16") return true;
    }
    return false;  // every core lists the same flags
  }
  return false;
}

int64_t set_threads(int64_t threads) {
  const int64_t n =
      threads > 0 ? threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
  torch::set_num_threads(static_cast<int>(n));
  return torch::get_num_threads();
}

}  // namespace mgpu::train
