// How a replica holds its parameters: in the configured memory format, gradients as views into
// one flat buffer (one all-reduce moves them all), with fused SGD the parameters too; the
// optimizer (fused, or torch's SGD); and the broadcast that makes every replica start from rank
// 0's weights.
#include <torch/torch.h>

#include "train/Precision.h"  // defines: in_memory_format
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
    if (config_.weight_decay > 0 && !config_.decay_norm_bias) {
      replica.decay = torch::full({total}, config_.weight_decay, options);
      int64_t at = 0;
      for (const auto& p : params) {
        if (p.dim() <= 1) replica.decay.narrow(0, at, p.numel()).zero_();
        at += p.numel();
      }
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
  if (config_.nesterov) {
    replica.params.addcmul_(grads.add_(replica.momentum, config_.momentum), lr, -1.0);
  } else {
    replica.params.addcmul_(replica.momentum, lr, -1.0);
  }
}

std::unique_ptr<torch::optim::SGD> make_sgd(const TrainConfig& config,
                                            const std::vector<torch::Tensor>& params) {
  const auto options = torch::optim::SGDOptions(config.lr)
                           .momentum(config.momentum)
                           .weight_decay(config.weight_decay)
                           .nesterov(config.nesterov);
  if (config.decay_norm_bias || config.weight_decay == 0) {
    return std::make_unique<torch::optim::SGD>(params, options);
  }
  std::vector<torch::Tensor> decayed, undecayed;
  for (const auto& p : params) (p.dim() <= 1 ? undecayed : decayed).push_back(p);
  auto without = options;
  without.weight_decay(0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decayed, std::make_unique<torch::optim::SGDOptions>(options));
  groups.emplace_back(undecayed, std::make_unique<torch::optim::SGDOptions>(without));
  return std::make_unique<torch::optim::SGD>(std::move(groups), options);
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
