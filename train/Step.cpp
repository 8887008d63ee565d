// One training step on one replica: shard the global batch, forward and backward on each
// micro-batch, reduce the gradients (in buckets, overlapping the last backward pass), and the
// optimizer step. Device work only, so that a CUDA graph can capture it.
#include <torch/torch.h>

#include <chrono>

#include "data/Augment.h"        // defines: shift_and_flip
#include "data/Preprocess.h"     // defines: subtract_mean
#include "models/Dropout.h"      // defines: RowKeys
#include "train/Precision.h"     // defines: AutocastGuard, in_memory_format
#include "train/Replica.h"       // defines: Trainer::Replica, PlanColumn
#include "train/comm/Reducer.h"  // defines: Reducer

namespace mgpu::train {

namespace {

// --amp fp16: torch.amp.GradScaler's factors, and the scale below which every step has
// overflowed so often that the run has stopped learning (float16's smallest subnormal).
constexpr double kScaleGrowth = 2.0;
constexpr double kScaleBackoff = 0.5;
constexpr double kLowestLossScale = 5.96e-8;

}  // namespace

void Trainer::train_step(Replica& replica, const torch::Tensor& batch_plan) {
  const bool fp16 = replica.loss_scale.defined();
  const auto params_grads = replica.grads.narrow(0, 0, replica.grads.numel() - 2);
  replica.grads.zero_();
  replica.backward_ms = 0;
  auto step_loss = torch::zeros({}, torch::TensorOptions().device(replica.device));
  const auto shards = local_shards(replica);
  for (size_t k = 0; k < shards.size(); ++k) {
    if (k > 0) swap_statistics(replica, k);
    micro_batch(replica, batch_plan.narrow(0, shards[k].offset, shards[k].size), shards[k].offset,
                /*last=*/k + 1 == shards.size(), step_loss);
  }
  if (shards.size() > 1) swap_statistics(replica, 0);
  // The buckets not yet started (all of them with --no-overlap), then the wait for every one.
  if (replica.reducer) replica.reducer->finish();
  if (fp16) {
    // As GradScaler.unscale_: divide by the scale and note any inf or NaN, on the summed
    // gradients, so that every replica finds the same and all skip the step together.
    replica.found_inf.zero_();
    at::_amp_foreach_non_finite_check_and_unscale_({params_grads}, replica.found_inf,
                                                   replica.loss_scale.reciprocal());
  }
  if (config_.clip_grad_norm > 0) {
    // As torch.nn.utils.clip_grad_norm_, on the global batch's gradient, on the device (no
    // host round trip; a CUDA graph captures it).
    params_grads.mul_((config_.clip_grad_norm / (params_grads.norm() + 1e-6)).clamp_max(1.0));
  }
  // A non-finite gradient on any replica makes the summed gradient non-finite, the same on all.
  const auto fault =
      fp16 ? replica.control[1].gt(0)
           : replica.control[1].gt(0) | torch::isfinite(params_grads.sum()).logical_not();
  replica.first_bad.copy_(
      torch::where(replica.first_bad.lt(0) & fault, replica.step_number, replica.first_bad));
  optimizer_step(replica);
  if (fp16) {  // as GradScaler.update: halve after an overflow, double after enough clean steps
    at::_amp_update_scale_(replica.loss_scale, replica.growth_tracker, replica.found_inf,
                           kScaleGrowth, kScaleBackoff, config_.loss_scale_growth_interval);
  }
}

void Trainer::micro_batch(Replica& replica, const torch::Tensor& rows, int64_t first_row,
                          bool last, torch::Tensor& step_loss) {
  using Clock = std::chrono::steady_clock;
  const auto dev = replica.device;
  const bool fp16 = replica.loss_scale.defined();
  const bool summed = config_.loss_reduction == "sum";
  const int64_t size = rows.size(0);
  const auto idx = rows.select(1, kIndex);
  auto x = data::shift_and_flip(
      data::subtract_mean(replica.train.images.index_select(0, idx), replica.mean),
      rows.select(1, kShiftX), rows.select(1, kShiftY), rows.select(1, kFlip).to(torch::kBool),
      config_.translate > 0 ? data::Fill::kReflect : data::Fill::kNearest);  // [b, C, H, W]
  const auto labels = replica.train.labels.index_select(0, idx);
  // Dropout masks keyed by each image's place in the run, not by who computes it.
  const models::RowKeys::Scope dropout_rows(
      replica.first_row + torch::arange(first_row, first_row + size,
                                        torch::TensorOptions().dtype(torch::kInt64).device(dev)),
      config_.seed);
  torch::Tensor logits, loss;
  {
    AutocastGuard amp(dev.type(), config_.amp);
    logits = replica.model.forward(in_memory_format(x, config_.channels_last));  // [b, classes]
    auto options =
        torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(config_.label_smoothing);
    if (summed) options.reduction(torch::kSum);
    loss = torch::nn::functional::cross_entropy(logits, labels, options);
  }
  step_loss += loss.detach();
  replica.loss_sum += summed ? loss.detach().to(torch::kFloat)
                             : loss.detach().to(torch::kFloat) * static_cast<double>(size);
  replica.correct += logits.detach().argmax(1).eq(labels).sum();
  if (last) {
    // Flags ride with the gradients (the first bucket), so every replica learns of any
    // replica's stop request or non-finite loss in the same step, without a collective of
    // their own; they are known before the last backward pass starts reducing. In float16 a
    // scale driven to nothing is a fault (an overflowing gradient only skips the step).
    replica.control[0].copy_(replica.stop_flag);
    replica.control[1].copy_(fp16 ? torch::isfinite(step_loss).logical_not() |
                                        replica.loss_scale.lt(kLowestLossScale)
                                  : torch::isfinite(step_loss).logical_not());
    // Only the last micro-batch's backward pass reduces (DDP's no_sync before it).
    if (replica.reducer) replica.reducer->arm();
  }
  // Weighted by the shard's share, the summed gradients are the whole batch's gradient
  // (times the loss scale in float16, so that small gradients do not underflow); a summed
  // loss needs no weight.
  const double batch = static_cast<double>(global_batch());
  auto weighted = summed ? loss : loss * (static_cast<double>(size) / batch);
  const auto backward_start = Clock::now();
  (fp16 ? weighted * replica.loss_scale : weighted).backward();
  replica.backward_ms +=
      std::chrono::duration<double, std::milli>(Clock::now() - backward_start).count();
}

void Trainer::swap_statistics(Replica& replica, size_t k) {
  // The module holds micro-batch 0's statistics between steps; stat_sets[0] keeps them while
  // micro-batches 1..K-1 run, each with its own set swapped in (copies: a CUDA graph captures
  // them).
  torch::NoGradGuard no_grad;
  const auto buffers = replica.model.ptr()->buffers();
  const size_t before = k == 0 ? replica.stat_sets.size() - 1 : k - 1;
  for (size_t i = 0; i < buffers.size(); ++i) {
    replica.stat_sets[before][i].copy_(buffers[i]);
    buffers[i].copy_(replica.stat_sets[k][i]);
  }
}

}  // namespace mgpu::train
