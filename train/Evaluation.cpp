// Evaluation during training: the replicas' batch-norm statistics averaged, then the data set
// split across replicas, each part evaluated on its device (with --tta's views), and the sums
// all-reduced.
#include <torch/torch.h>

#include "data/Preprocess.h"  // defines: subtract_mean
#include "train/Precision.h"  // defines: AutocastGuard, in_memory_format
#include "train/Replica.h"    // defines: Trainer::Replica
#include "train/Sharding.h"   // defines: shard_batch
#include "train/Tta.h"        // defines: tta_logits, parse_tta

namespace mgpu::train {

void Trainer::average_batch_norm_stats(Replica& replica) {
  // Each replica's running statistics (and with --accumulate K each micro-batch's) saw only
  // its own shards; their mean is the statistic a single model would hold (up to the order of
  // updates), and every set takes it, as every replica does. Keras' multi_gpu_model instead
  // had every replica update one shared moving average.
  torch::NoGradGuard no_grad;
  auto buffers = replica.model.ptr()->buffers();
  const size_t sets = std::max<size_t>(1, replica.stat_sets.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    auto& buffer = buffers[i];
    if (!buffer.is_floating_point()) continue;  // num_batches_tracked is the same everywhere
    for (size_t k = 1; k < sets; ++k) buffer.add_(replica.stat_sets[k][i]);
    if (replica.comm) replica.comm->all_reduce_sum(buffer);
    buffer.div_(static_cast<double>(sets * static_cast<size_t>(world_size())));
    for (size_t k = 1; k < sets; ++k) replica.stat_sets[k][i].copy_(buffer);
  }
}

Metrics Trainer::evaluate_replica(Replica& replica, const data::Dataset& dataset) {
  average_batch_norm_stats(replica);
  torch::NoGradGuard no_grad;
  auto& module = *replica.model.ptr();
  module.eval();
  const auto dev = replica.device;
  auto loss_sum = torch::zeros({}, torch::TensorOptions().device(dev));
  auto correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  const Tta tta = parse_tta(config_.tta);
  const Shard part =
      shard_batch(dataset.size(), world_size())[replica.comm ? replica.comm->rank() : 0];
  for (int64_t start = part.offset; start < part.offset + part.size; start += config_.eval_batch) {
    const int64_t len = std::min(config_.eval_batch, part.offset + part.size - start);
    const auto images = dataset.images.narrow(0, start, len).to(dev);
    const auto labels = dataset.labels.narrow(0, start, len).to(dev);
    const auto logits = tta_logits(
        [&](const torch::Tensor& x) {
          AutocastGuard amp(dev.type(), config_.amp);
          return replica.model.forward(in_memory_format(x, config_.channels_last));
        },
        data::subtract_mean(images, replica.mean), tta);  // [len, classes] float
    loss_sum += torch::nn::functional::cross_entropy(
        logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    correct += logits.argmax(1).eq(labels).sum();
  }
  if (replica.comm) {
    replica.comm->all_reduce_sum(loss_sum);
    replica.comm->all_reduce_sum(correct);
  }
  module.train();
  const auto n = static_cast<double>(dataset.size());
  return {loss_sum.item<double>() / n, static_cast<double>(correct.item<int64_t>()) / n};
}

Metrics Trainer::evaluate(const data::Dataset& dataset) {
  for_each_replica([&](Replica& r) { r.val = evaluate_replica(r, dataset); });
  return replicas_[0]->val;
}

}  // namespace mgpu::train
