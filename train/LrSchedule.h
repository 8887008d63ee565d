// The learning rate over a run: the tutorial's polynomial decay per epoch, optionally scaled
// by the global batch (Goyal et al., 2017: linear scaling with gradual warm-up).
#pragma once

#include <cmath>
#include <cstdint>

namespace mgpu::train {

/// lr for epoch e (0-based) of E: base * (1 - e / E)^power. power 1 is linear decay to zero.
inline double poly_decay(double base_lr, int64_t epoch, int64_t epochs, double power) {
  const double progress = static_cast<double>(epoch) / static_cast<double>(epochs);
  return base_lr * std::pow(1.0 - progress, power);
}

struct LrSchedule {
  double base_lr = 5e-3;       // the single-device learning rate
  int64_t epochs = 70;
  double power = 1.0;
  double scale = 1.0;          // linear scaling: global batch / batch per device; else 1
  double warmup_epochs = 0.0;  // ramp from base_lr to base_lr * scale over this many epochs

  /// The rate for the step at `fraction` (0 <= fraction < 1) of epoch `epoch`: the peak rate
  /// base_lr * scale, times the tutorial's per-epoch decay, times the warm-up ramp, which
  /// rises linearly per step from 1 / scale to 1 during the first warmup_epochs epochs.
  double at(int64_t epoch, double fraction) const {
    const double decayed = poly_decay(base_lr * scale, epoch, epochs, power);
    const double t = static_cast<double>(epoch) + fraction;
    if (t >= warmup_epochs || scale == 1.0) return decayed;
    const double start = 1.0 / scale;
    return decayed * (start + (1.0 - start) * t / warmup_epochs);
  }
};

}  // namespace mgpu::train
