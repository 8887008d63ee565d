// Dropout whose masks do not depend on how a batch is split: the mask of an image is a function
// of the run's seed, the step and the image's position in the global batch (its row key), never
// of which replica, process or micro-batch computes it, nor of a shared random generator.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace mgpu::models {

/// The row keys of the batch in this thread's forward pass. The trainer opens a scope around
/// each micro-batch's forward pass with one key per image ([b] int64 on the images' device:
/// global step x global batch + position in the global batch) and the run's seed. Outside a
/// scope, Dropout draws from LibTorch's generator as torch::nn::Dropout does.
class RowKeys {
 public:
  class Scope {
   public:
    Scope(torch::Tensor keys, uint64_t seed);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    const RowKeys* outer_;
  };
  /// The innermost scope's keys, or nullptr.
  static const RowKeys* current();
  /// The uniform numbers in [0, 1) of layer `salt` for the rows: [b, features] float, the same
  /// for a row whatever rows come with it.
  torch::Tensor uniform(int64_t features, const torch::TensorOptions& options) const;

 private:
  RowKeys(torch::Tensor keys, uint64_t seed) : keys_(std::move(keys)), seed_(seed) {}
  torch::Tensor keys_;
  uint64_t seed_;
  mutable int64_t layers_ = 0;  // dropout layers run in this scope: each gets its own stream
};

struct DropoutOptions {
  TORCH_ARG(double, p) = 0.5;
};

/// Inverted dropout like torch::nn::Dropout (zero each feature with probability p in training,
/// scale the rest by 1 / (1 - p); nothing in eval mode) with row-keyed masks (RowKeys). Models
/// that drop out use this one, so that replicas and accumulation train identically.
class DropoutImpl : public torch::nn::Cloneable<DropoutImpl> {
 public:
  explicit DropoutImpl(DropoutOptions options = {});
  explicit DropoutImpl(double p) : DropoutImpl(DropoutOptions().p(p)) {}
  void reset() override {}
  torch::Tensor forward(torch::Tensor x);

  DropoutOptions options;
};
TORCH_MODULE(Dropout);

}  // namespace mgpu::models
