// Trainer: the tutorial's training loop on one device (CPU or one CUDA GPU).
#pragma once

#include <torch/torch.h>

#include <functional>

#include "data/Augment.h"
#include "data/Dataset.h"
#include "train/History.h"
#include "train/Progress.h"
#include "train/TrainConfig.h"

namespace mgpu::train {

struct Metrics {
  double loss = 0;  // mean cross-entropy per image
  double acc = 0;   // fraction correct
};

class Trainer {
 public:
  /// model: any module whose forward maps [B, C, H, W] float to [B, classes] logits.
  /// mean: the training set's mean image [C, H, W], subtracted from every batch.
  Trainer(const TrainConfig& config, torch::nn::AnyModule model, torch::Device device,
          const torch::Tensor& mean);

  /// Trains config.epochs epochs; after each, evaluates on test and calls on_epoch with the
  /// history so far. Throws std::runtime_error if the loss becomes non-finite.
  History fit(const data::Dataset& train, const data::Dataset& test, Progress& progress,
              const std::function<void(const History&)>& on_epoch = {});

  /// Loss and accuracy on a data set, in eval mode, in batches of config.eval_batch.
  Metrics evaluate(const data::Dataset& dataset);

  /// One SGD step on a raw uint8 batch [B, C, H, W] with labels [B], both on the device.
  /// Returns the batch's summed loss and number correct as device tensors (no host sync).
  std::pair<torch::Tensor, torch::Tensor> train_step(const torch::Tensor& images,
                                                     const torch::Tensor& labels);

  void set_lr(double lr);
  /// Training images per second over all epochs so far (training steps only, no evaluation).
  double images_per_second() const { return train_seconds_ > 0 ? train_images_ / train_seconds_ : 0; }
  torch::nn::AnyModule& model() { return model_; }
  torch::Device device() const { return device_; }

 private:
  TrainConfig config_;
  torch::nn::AnyModule model_;
  torch::Device device_;
  torch::Tensor mean_;  // [C, H, W] float on device_
  torch::optim::SGD optimizer_;
  data::Augmenter augment_;
  torch::Generator shuffle_;  // CPU generator for the per-epoch permutation
  double train_seconds_ = 0, train_images_ = 0;
};

}  // namespace mgpu::train
