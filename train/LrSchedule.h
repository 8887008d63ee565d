// The tutorial's polynomial learning-rate decay, applied once per epoch.
#pragma once

#include <cmath>
#include <cstdint>

namespace mgpu::train {

/// lr for epoch e (0-based) of E: base * (1 - e / E)^power. power 1 is linear decay to zero.
inline double poly_decay(double base_lr, int64_t epoch, int64_t epochs, double power) {
  const double progress = static_cast<double>(epoch) / static_cast<double>(epochs);
  return base_lr * std::pow(1.0 - progress, power);
}

}  // namespace mgpu::train
