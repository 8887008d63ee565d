// --lookahead: airbench's exponential moving average of the weights, which the weights are
// reset to every few steps (Zhang et al., 2019, "Lookahead Optimizer", with airbench's rising
// decay), and the run's last word.
#include <torch/torch.h>

#include <cmath>

#include "train/Replica.h"  // defines: Trainer::Replica

namespace mgpu::train {

void Trainer::start_lookahead(Replica& replica) {
  torch::NoGradGuard no_grad;
  replica.averaged.clear();
  replica.average.clear();
  // As airbench's state_dict walk: the parameters, then the float buffers (not the counters).
  auto& module = *replica.model.ptr();
  for (const auto& p : module.parameters()) replica.averaged.push_back(p);
  for (const auto& b : module.buffers()) {
    if (b.is_floating_point()) replica.averaged.push_back(b);
  }
  // --accumulate K: micro-batch k's statistics have an average of their own, as replica k's
  // do (the module holds micro-batch 0's between steps).
  for (size_t k = 1; k < replica.stat_sets.size(); ++k) {
    for (const auto& b : replica.stat_sets[k]) {
      if (b.is_floating_point()) replica.averaged.push_back(b);
    }
  }
  for (const auto& t : replica.averaged) replica.average.push_back(t.detach().clone());
}

void Trainer::lookahead(Replica& replica, int64_t step, int64_t total) {
  const int64_t every = config_.lookahead;
  if (every <= 0) return;
  torch::NoGradGuard no_grad;
  auto update = [&](double decay) {
    for (size_t i = 0; i < replica.average.size(); ++i) {
      replica.average[i].lerp_(replica.averaged[i], 1.0 - decay);
      replica.averaged[i].copy_(replica.average[i]);
    }
  };
  if (step % every == 0) {
    const double t = static_cast<double>(step) / static_cast<double>(total);
    update(std::pow(config_.lookahead_decay, static_cast<double>(every)) * t * t * t);
  }
  if (step == total) update(1.0);
}

}  // namespace mgpu::train
