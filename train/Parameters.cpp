// How a replica holds its parameters: in the configured memory format, gradients as views into
// one flat buffer (one all-reduce moves them all), with fused SGD the parameters too; the
// optimizer (fused, or torch's SGD); and the broadcast that makes every replica start from rank
// 0's weights.
#include <torch/torch.h>

#include "train/Precision.h"  // defines: in_memory_format
#include "data/InputError.h"  // defines: InputError
#include "train/Replica.h"    // defines: Trainer::Replica

namespace mgpu::train {

void Trainer::bind_parameters(Replica& replica) {
  torch::NoGradGuard no_grad;
  auto params = replica.model.ptr()->parameters();
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  const auto options = params.front().options().requires_grad(false);
  // Gradients live in one flat buffer so that one all-reduce moves them all; two more
  // entries carry each replica's stop request and fault flag along with them.
  if (!replica.grads.defined()) {
    replica.grads = torch::zeros({total + 2}, options);
    replica.control = replica.grads.narrow(0, total, 2);
  }
  if (config_.fused_sgd && !replica.params.defined()) {
    replica.params = torch::empty({total}, options);
    replica.momentum = torch::zeros({total}, options);
    const auto& groups = config_.param_groups;
    bool per_entry_decay = config_.weight_decay > 0 && !config_.decay_norm_bias;
    bool per_entry_rate = false;
    for (const auto& p : params) per_entry_rate |= !p.requires_grad();
    for (const auto& g : groups) {
      per_entry_decay |= g.weight_decay >= 0;
      per_entry_rate |= g.lr_scale != 1 || g.epochs >= 0;
    }
    if (per_entry_decay) replica.decay = torch::zeros({total}, options);
    if (per_entry_rate) replica.lr_scale = torch::zeros({total}, options);
    int64_t at = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& p = params[i];
      const int g = replica.group_of[i];
      if (per_entry_decay && p.requires_grad()) {
        const double own = g >= 0 ? groups[g].weight_decay : -1;
        replica.decay.narrow(0, at, p.numel())
            .fill_(own >= 0 ? own
                   : p.dim() <= 1 && !config_.decay_norm_bias ? 0.0
                                                              : config_.weight_decay);
      }
      at += p.numel();
    }
  }
  int64_t offset = 0;
  for (auto& p : params) {
    const auto value = in_memory_format(p.detach(), config_.channels_last);
    if (config_.fused_sgd) {
      auto view =
          replica.params.narrow(0, offset, p.numel()).as_strided(p.sizes(), value.strides());
      view.copy_(value);
      p.set_data(view);
    } else if (!value.is_same(p)) {
      p.set_data(value);
    }
    p.mutable_grad() =
        replica.grads.narrow(0, offset, p.numel()).as_strided(p.sizes(), value.strides());
    offset += p.numel();
  }
}

void Trainer::optimizer_step(Replica& replica) {
  if (!config_.fused_sgd) {
    replica.optimizer->step();
    return;
  }
  // SGD as torch.optim.SGD computes it (weight decay added to the gradient, the first momentum
  // buffer is that sum, Nesterov's step along gradient plus momentum), over all parameters at
  // once. The gradient buffer is overwritten; the next step zeroes it.
  torch::NoGradGuard no_grad;
  auto grads = replica.grads.narrow(0, 0, replica.params.numel());
  if (replica.decay.defined()) {
    grads.addcmul_(replica.params, replica.decay);
  } else if (config_.weight_decay > 0) {
    grads.add_(replica.params, config_.weight_decay);
  }
  if (!replica.found_inf.defined()) {
    replica.momentum.mul_(config_.momentum).add_(grads);
    update_parameters(replica, grads, replica.lr);
    return;
  }
  // float16's overflowed step, skipped on the device (GradScaler.step does not call the
  // optimizer): no gradient, momentum kept (times 1, not the momentum), no rate.
  const auto& skip = replica.found_inf;  // 0 or 1
  grads.masked_fill_(skip.gt(0), 0.0);
  replica.momentum.mul_(skip * (1.0 - config_.momentum) + config_.momentum).add_(grads);
  update_parameters(replica, grads, replica.lr * (1.0 - skip));
}

void Trainer::update_parameters(Replica& replica, torch::Tensor& grads, const torch::Tensor& lr) {
  const auto rate = replica.lr_scale.defined() ? lr * replica.lr_scale : lr;
  if (config_.nesterov) {
    replica.params.addcmul_(grads.add_(replica.momentum, config_.momentum), rate, -1.0);
  } else {
    replica.params.addcmul_(replica.momentum, rate, -1.0);
  }
}

std::vector<int> assign_groups(const TrainConfig& config, const torch::nn::Module& module) {
  std::vector<int> group_of;
  for (const auto& item : module.named_parameters()) {
    int found = -1;
    for (size_t g = 0; g < config.param_groups.size() && found < 0; ++g) {
      if (item.key().find(config.param_groups[g].pattern) != std::string::npos) {
        found = static_cast<int>(g);
      }
    }
    if (found >= 0 && config.param_groups[found].frozen) item.value().requires_grad_(false);
    group_of.push_back(found);
  }
  return group_of;
}

double group_lr_scale(const ParamGroup& group, int64_t epoch) {
  if (group.frozen || (group.epochs >= 0 && epoch >= group.epochs)) return 0.0;
  return group.lr_scale;
}

void Trainer::make_optimizer(Replica& replica) {
  // As torch.optim.SGD(param_groups): the parameters without a --param-group first (split by
  // --no-decay-norm-bias), then each group's; frozen parameters in none.
  const auto options = torch::optim::SGDOptions(config_.lr)
                           .momentum(config_.momentum)
                           .weight_decay(config_.weight_decay)
                           .nesterov(config_.nesterov);
  const auto params = replica.model.ptr()->parameters();
  const bool split = !config_.decay_norm_bias && config_.weight_decay > 0;
  std::vector<std::vector<torch::Tensor>> members(config_.param_groups.size());
  std::vector<torch::Tensor> decayed, undecayed;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    if (!p.requires_grad()) continue;
    const int g = replica.group_of[i];
    if (g >= 0) {
      members[g].push_back(p);
    } else {
      (split && p.dim() <= 1 ? undecayed : decayed).push_back(p);
    }
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  replica.optimizer_groups.clear();
  auto add = [&](std::vector<torch::Tensor> tensors, double decay, int group) {
    if (tensors.empty()) return;
    auto own = options;
    own.weight_decay(decay);
    groups.emplace_back(std::move(tensors), std::make_unique<torch::optim::SGDOptions>(own));
    replica.optimizer_groups.push_back(group);
  };
  add(decayed, config_.weight_decay, -1);
  add(undecayed, 0.0, -1);
  for (size_t g = 0; g < members.size(); ++g) {
    const double decay = config_.param_groups[g].weight_decay;
    add(members[g], decay >= 0 ? decay : config_.weight_decay, static_cast<int>(g));
  }
  if (groups.empty()) {
    throw data::InputError("every parameter of the model is frozen: nothing to train");
  }
  replica.optimizer = std::make_unique<torch::optim::SGD>(std::move(groups), options);
}

void Trainer::set_rates(Replica& replica, int64_t epoch, double lr) {
  torch::NoGradGuard no_grad;
  replica.lr.fill_(lr);
  const auto& groups = config_.param_groups;
  if (replica.optimizer) {
    auto& torch_groups = replica.optimizer->param_groups();
    for (size_t i = 0; i < torch_groups.size(); ++i) {
      const int g = replica.optimizer_groups[i];
      static_cast<torch::optim::SGDOptions&>(torch_groups[i].options())
          .lr(g < 0 ? lr : lr * group_lr_scale(groups[g], epoch));
    }
    return;
  }
  if (!replica.lr_scale.defined()) return;
  // Fused SGD: the multipliers per entry, rewritten when an epoch begins (a CUDA graph reads
  // them from the same memory).
  const double marker = static_cast<double>(epoch);
  if (replica.lr_scale_epoch == marker) return;
  replica.lr_scale_epoch = marker;
  const auto params = replica.model.ptr()->parameters();
  int64_t at = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const int g = replica.group_of[i];
    const double scale = !params[i].requires_grad() ? 0.0
                         : g < 0                    ? 1.0
                                                    : group_lr_scale(groups[g], epoch);
    replica.lr_scale.narrow(0, at, params[i].numel()).fill_(scale);
    at += params[i].numel();
  }
}

void Trainer::broadcast_weights(Replica& replica) {
  // Replicas start from rank 0's weights, also those in other processes.
  if (!replica.comm) return;
  torch::NoGradGuard no_grad;
  auto broadcast = [&](torch::Tensor& t) {  // collectives move contiguous tensors
    auto dense = t.contiguous();
    replica.comm->broadcast(dense, 0);
    if (!dense.is_same(t)) t.copy_(dense);
  };
  for (auto& p : replica.model.ptr()->parameters()) broadcast(p);
  for (auto& b : replica.model.ptr()->buffers()) broadcast(b);
}

}  // namespace mgpu::train
