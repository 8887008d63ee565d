#include "train/Precision.h"

#include <ATen/autocast_mode.h>

namespace mgpu::train {

AutocastGuard::AutocastGuard(c10::DeviceType device_type, const std::string& amp)
    : device_type_(device_type), enabled_(amp != "off") {
  if (!enabled_) return;
  was_enabled_ = at::autocast::is_autocast_enabled(device_type_);
  old_dtype_ = at::autocast::get_autocast_dtype(device_type_);
  at::autocast::set_autocast_enabled(device_type_, true);
  at::autocast::set_autocast_dtype(device_type_, amp == "fp16" ? at::kHalf : at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_type_, was_enabled_);
  at::autocast::set_autocast_dtype(device_type_, old_dtype_);
}

torch::Tensor in_memory_format(const torch::Tensor& x, bool channels_last) {
  return channels_last && x.dim() == 4 ? x.contiguous(at::MemoryFormat::ChannelsLast)
                                       : x.contiguous();
}

}  // namespace mgpu::train
