// Mixed precision and memory layout: the two switches that change how the same step is
// computed without changing what it computes (up to rounding).
#pragma once

#include <torch/torch.h>

#include <string>

namespace mgpu::train {

/// While alive, eligible operations on device_type's tensors run in bfloat16 (amp "bf16") or
/// float16 (amp "fp16") (autocast); does nothing for amp "off". Its end clears autocast's
/// cache of cast weights, as Python's torch.autocast does on exit: each step casts the weights
/// it has just updated.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device_type, const std::string& amp);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_type_;
  bool enabled_, was_enabled_ = false;
  at::ScalarType old_dtype_ = at::kFloat;
};

/// x in NHWC memory order if channels_last and x has 4 dimensions, else contiguous.
torch::Tensor in_memory_format(const torch::Tensor& x, bool channels_last);

}  // namespace mgpu::train
