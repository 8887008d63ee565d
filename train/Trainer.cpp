// The training loop: shuffle, augment, forward, backward, SGD step; evaluate every epoch.
#include "train/Trainer.h"

#include <fmt/core.h>

#include <chrono>
#include <cmath>

#include "data/InputError.h"
#include "data/Preprocess.h"
#include "train/LrSchedule.h"

namespace mgpu::train {

namespace {

torch::nn::AnyModule on_device(torch::nn::AnyModule model, torch::Device device) {
  model.ptr()->to(device);
  return model;
}

// Seeds for the independent random streams of a run, all derived from --seed.
constexpr uint64_t kShuffleStream = 1;
constexpr uint64_t kAugmentStream = 2;

}  // namespace

Trainer::Trainer(const TrainConfig& config, torch::nn::AnyModule model, torch::Device device,
                 const torch::Tensor& mean)
    : config_(config),
      model_(on_device(std::move(model), device)),
      device_(device),
      mean_(mean.to(device)),
      optimizer_(model_.ptr()->parameters(),
                 torch::optim::SGDOptions(config.lr).momentum(config.momentum)),
      augment_(data::AugmentOptions{}, config.seed + kAugmentStream),
      shuffle_(at::detail::createCPUGenerator(config.seed + kShuffleStream)) {}

void Trainer::set_lr(double lr) {
  for (auto& group : optimizer_.param_groups()) {
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
  }
}

std::pair<torch::Tensor, torch::Tensor> Trainer::train_step(const torch::Tensor& images,
                                                            const torch::Tensor& labels) {
  auto x = augment_(data::subtract_mean(images, mean_));  // [B, C, H, W] float
  auto logits = model_.forward(x);                        // [B, classes]
  auto loss = torch::nn::functional::cross_entropy(logits, labels);
  optimizer_.zero_grad();
  loss.backward();
  optimizer_.step();
  const auto batch = static_cast<double>(images.size(0));
  auto correct = logits.detach().argmax(1).eq(labels).sum();
  return {loss.detach() * batch, correct};
}

Metrics Trainer::evaluate(const data::Dataset& dataset) {
  torch::NoGradGuard no_grad;
  auto& module = *model_.ptr();
  module.eval();
  auto loss_sum = torch::zeros({}, torch::TensorOptions().device(device_));
  auto correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(device_));
  const int64_t n = dataset.size();
  for (int64_t start = 0; start < n; start += config_.eval_batch) {
    const int64_t len = std::min(config_.eval_batch, n - start);
    auto images = dataset.images.narrow(0, start, len).to(device_);
    auto labels = dataset.labels.narrow(0, start, len).to(device_);
    auto logits = model_.forward(data::subtract_mean(images, mean_));
    loss_sum += torch::nn::functional::cross_entropy(
        logits, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    correct += logits.argmax(1).eq(labels).sum();
  }
  module.train();
  return {loss_sum.item<double>() / static_cast<double>(n),
          static_cast<double>(correct.item<int64_t>()) / static_cast<double>(n)};
}

History Trainer::fit(const data::Dataset& train, const data::Dataset& test, Progress& progress,
                     const std::function<void(const History&)>& on_epoch) {
  using Clock = std::chrono::steady_clock;
  // The whole uint8 data set lives on the training device; batches are gathered there.
  const data::Dataset train_d{train.images.to(device_), train.labels.to(device_)};
  const data::Dataset test_d{test.images.to(device_), test.labels.to(device_)};
  const int64_t batch = config_.batch_per_device;
  const int64_t steps = train.size() / batch;  // full batches only, as Keras' generator
  if (steps == 0) {
    throw data::InputError(fmt::format(
        "the training set has {} images, fewer than one batch of {} (see --limit-train and "
        "--batch-per-device)",
        train.size(), batch));
  }
  auto& module = *model_.ptr();
  module.train();
  History history;
  for (int64_t epoch = 0; epoch < config_.epochs; ++epoch) {
    const auto start = Clock::now();
    const double lr = poly_decay(config_.lr, epoch, config_.epochs, config_.power);
    set_lr(lr);
    progress.epoch_begin(epoch + 1, config_.epochs, steps);
    auto order = torch::randperm(train.size(), shuffle_).to(device_);
    auto loss_sum = torch::zeros({}, torch::TensorOptions().device(device_));
    auto correct = torch::zeros({}, torch::TensorOptions().dtype(torch::kInt64).device(device_));
    auto running = [&](int64_t step) {  // host read of the device accumulators
      const double seen = static_cast<double>(step * batch);
      const double loss = loss_sum.item<double>() / seen;
      if (!std::isfinite(loss)) {
        throw std::runtime_error(fmt::format(
            "the training loss became {} in epoch {} by step {}; stopping (history.csv and the "
            "weights of the last finished epoch are kept)",
            loss, epoch + 1, step));
      }
      return std::pair{loss, static_cast<double>(correct.item<int64_t>()) / seen};
    };
    for (int64_t step = 1; step <= steps; ++step) {
      auto idx = order.narrow(0, (step - 1) * batch, batch);
      auto [batch_loss, batch_correct] =
          train_step(train_d.images.index_select(0, idx), train_d.labels.index_select(0, idx));
      loss_sum += batch_loss;
      correct += batch_correct;
      if (progress.due(step)) {
        auto [loss, acc] = running(step);
        progress.update(step, loss, acc);
      }
    }
    const auto [loss, acc] = running(steps);  // reads the device: training work is done
    train_seconds_ += std::chrono::duration<double>(Clock::now() - start).count();
    train_images_ += static_cast<double>(steps * batch);
    const Metrics val = evaluate(test_d);
    EpochStats stats;
    stats.epoch = epoch + 1;
    stats.lr = lr;
    stats.loss = loss;
    stats.acc = acc;
    stats.val_loss = val.loss;
    stats.val_acc = val.acc;
    stats.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    history.push_back(stats);
    progress.epoch_end(stats);
    if (on_epoch) on_epoch(history);
  }
  return history;
}

}  // namespace mgpu::train
