// The learning rate over a run: the tutorial's polynomial decay per epoch (or a cosine, step,
// constant or per-step piecewise-linear schedule), optionally scaled by the global batch (Goyal
// et al., 2017: linear scaling with gradual warm-up).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mgpu::train {

/// The steps of a run of `epochs` epochs (fractional: ending part way through the last) of
/// steps_per_epoch each: ceil(steps_per_epoch x epochs) of the decimal the user wrote. The
/// product in doubles lands just above a whole number for values such as 100 x 1.1
/// (110.00000000000001), so a product within 1e-9 of a whole number is that number.
inline int64_t run_steps(int64_t steps_per_epoch, double epochs) {
  const double product = static_cast<double>(steps_per_epoch) * epochs;
  const double nearest = std::round(product);
  if (std::abs(product - nearest) <= 1e-9 * std::max(1.0, nearest)) {
    return static_cast<int64_t>(nearest);
  }
  return static_cast<int64_t>(std::ceil(product));
}

/// lr for epoch e (0-based) of E: base * (1 - e / E)^power. power 1 is linear decay to zero.
inline double poly_decay(double base_lr, int64_t epoch, double epochs, double power) {
  const double progress = static_cast<double>(epoch) / epochs;
  return base_lr * std::pow(1.0 - progress, power);
}

/// The rate of epoch e (0-based) of E under a named schedule, before scaling and warm-up:
/// poly (the tutorial's), cosine (to zero at the end, as CosineAnnealingLR stepped per epoch),
/// step (times gamma once e reaches each milestone, as MultiStepLR) or constant.
inline double scheduled_rate(const std::string& schedule, double base_lr, int64_t epoch,
                             double epochs, double power, const std::vector<int64_t>& milestones,
                             double gamma) {
  if (schedule == "cosine") {
    const double progress = static_cast<double>(epoch) / epochs;
    return base_lr * 0.5 * (1.0 + std::cos(M_PI * progress));
  }
  if (schedule == "step") {
    double rate = base_lr;
    for (const int64_t m : milestones) {
      if (epoch >= m) rate *= gamma;
    }
    return rate;
  }
  if (schedule == "constant") return base_lr;
  return poly_decay(base_lr, epoch, epochs, power);
}

/// A knot of a piecewise-linear schedule: at this fraction of the run (0 to 1), the rate is this
/// multiple of the base rate.
using LrKnot = std::pair<double, double>;

/// The multiple of the base rate at fraction t of the run, interpolated linearly between the
/// knots (sorted by fraction, the first at 0, the last at 1), as numpy.interp does.
inline double interpolate(const std::vector<LrKnot>& knots, double t) {
  if (t <= knots.front().first) return knots.front().second;
  for (size_t k = 1; k < knots.size(); ++k) {
    const auto& [x0, y0] = knots[k - 1];
    const auto& [x1, y1] = knots[k];
    if (t <= x1) return x1 == x0 ? y1 : y0 + (y1 - y0) * (t - x0) / (x1 - x0);
  }
  return knots.back().second;
}

struct LrSchedule {
  double base_lr = 5e-3;       // the single-device learning rate
  double epochs = 70;          // may be fractional (TrainConfig::epochs)
  double power = 1.0;
  std::string name = "poly";   // see scheduled_rate
  std::vector<int64_t> milestones;
  double gamma = 0.1;
  double scale = 1.0;          // linear scaling: global batch / batch per device; else 1
  double warmup_epochs = 0.0;  // ramp from base_lr to base_lr * scale over this many epochs
  std::vector<LrKnot> knots;   // name "piecewise": per step, interpolated (airbench's is
                               // {0, 0.2}, {0.2, 1}, {1, 0})

  /// The rate for the step at `fraction` (0 <= fraction < 1) of epoch `epoch`: the peak rate
  /// base_lr * scale under the schedule (piecewise: at that point of the run, so it changes
  /// every step; the others per epoch), times the warm-up ramp, which rises linearly per step
  /// from 1 / scale to 1 during the first warmup_epochs epochs.
  double at(int64_t epoch, double fraction) const {
    const double t = static_cast<double>(epoch) + fraction;
    const double decayed =
        name == "piecewise"
            ? base_lr * scale * interpolate(knots, t / epochs)
            : scheduled_rate(name, base_lr * scale, epoch, epochs, power, milestones, gamma);
    if (t >= warmup_epochs || scale == 1.0) return decayed;
    const double start = 1.0 / scale;
    return decayed * (start + (1.0 - start) * t / warmup_epochs);
  }
};

}  // namespace mgpu::train
