// How a replica holds its parameters: in the configured memory format, gradients as views into
// one flat buffer (one all-reduce moves them all), with fused SGD the parameters too; the
// fused optimizer step; and the broadcast that makes every replica start from rank 0's weights.
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
  // SGD with momentum as torch.optim.SGD computes it (the first buffer is the gradient), over
  // all parameters at once.
  torch::NoGradGuard no_grad;
  const auto grads = replica.grads.narrow(0, 0, replica.params.numel());
  replica.momentum.mul_(config_.momentum).add_(grads);
  replica.params.addcmul_(replica.momentum, replica.lr, -1.0);
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
