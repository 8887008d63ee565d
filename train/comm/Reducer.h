// Reducer: the gradient all-reduce in buckets, each started as soon as the backward pass has
// accumulated its last gradient (as PyTorch DDP's reducer does), so that the communication of
// the last layers' gradients overlaps the backward pass of the first layers.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <exception>
#include <memory>
#include <vector>

#include "train/comm/Communicator.h"

namespace mgpu::train {

struct BucketOptions {
  double bucket_mb = 25;       // --bucket-mb: a bucket is closed once it holds this much (DDP's
                               // bucket_cap_mb)
  double first_bucket_mb = 1;  // the first bucket's cap, small so that communication starts
                               // early (DDP's first bucket); never more than bucket_mb
  bool overlap = true;         // false (--no-overlap): one all-reduce of the whole buffer after
                               // the backward pass
  c10::ScalarType wire = c10::kFloat;  // --comm-dtype: the gradients go through the all-reduce
                                       // in this type (kBFloat16, kHalf: DDP's compression hooks)
};

/// A contiguous slice [offset, offset + size) of the flat gradient buffer: the gradients of
/// `params` (indices in registration order), and with the first bucket the buffer's tail.
struct Bucket {
  int64_t offset = 0, size = 0;
  std::vector<size_t> params;
};

/// DDP's assignment by size: the parameters in reverse registration order (the order in which
/// the backward pass produces their gradients); a bucket is closed once it holds at least its
/// cap in bytes (the first bucket's, then bucket_mb; MB = 2^20 bytes, as DDP). The gradients lie
/// in registration order in the buffer (numels[i] entries each, from offset 0), so every bucket
/// is one slice of it; the `tail` entries after the last gradient belong to the first bucket.
/// Buckets are numbered in the order they are started: 0 holds the last parameters.
std::vector<Bucket> assign_buckets(const std::vector<int64_t>& numels, int64_t element_bytes,
                                   int64_t tail, const BucketOptions& options);

/// When the last step's communication happened, in milliseconds since its arm() (host clock).
struct StepTimeline {
  double backward_end = 0;      // finish() was called: the backward pass had returned (0 when
                                // the pass was not armed)
  double finished = 0;          // every bucket had been waited for
  std::vector<double> started;  // per bucket: its all-reduce was started
  std::vector<int64_t> bytes;   // per bucket
};

class Reducer {
 public:
  /// params: the model's parameters in registration order, whose gradients are views of flat
  /// in that order from offset 0, followed by `tail` entries that travel with the first bucket
  /// (the trainer's control words, filled before the backward pass that reduces). comm: this
  /// replica's; it must outlive the reducer.
  Reducer(std::vector<torch::Tensor> params, torch::Tensor flat, int64_t tail, Communicator& comm,
          const BucketOptions& options);
  ~Reducer();  // removes its hooks
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  /// Call after the forward pass: its backward pass reduces. Each bucket's all-reduce starts,
  /// in bucket order, as soon as the autograd engine has accumulated the last of its gradients
  /// (a post hook on the AccumulateGrad node this forward pass made for each parameter; a
  /// parameter without one, unused or frozen, is not waited for). A backward pass without
  /// arm() only accumulates (DDP's no_sync, for all micro-batches but the last). With overlap off
  /// it only starts the clock of timeline().
  void arm();
  /// After the backward pass: starts every bucket not started yet (all of them with overlap
  /// off; a bucket with a parameter whose node got no gradient in this pass starts here,
  /// reducing that gradient's zeros), then waits for all (Work::wait), and removes the hooks.
  /// Throws CommError if one failed, std::runtime_error if a gradient came twice.
  void finish();

  const std::vector<Bucket>& buckets() const { return buckets_; }
  const StepTimeline& timeline() const { return timeline_; }

 private:
  using Clock = std::chrono::steady_clock;
  void hook(size_t param);
  void unhook();
  void open_pass();          // a new pass: nothing started, the timeline's clock from now
  void ready(size_t param);  // runs on the autograd engine's thread
  void start_ready_buckets();
  void start(size_t bucket);
  double since_arm() const;

  // The bytes bucket b moves (its gradients in the wire's type, the tail in float32).
  int64_t wire_bytes(size_t b) const;

  std::vector<torch::Tensor> params_;
  torch::Tensor flat_;
  int64_t tail_;
  torch::Tensor wire_;  // with a 16-bit --comm-dtype: flat_ in that type, else undefined
  std::vector<std::pair<torch::Tensor, torch::Tensor>> unpack_;  // (gradients, their wire) to
                                                                 // copy back after the wait
  Communicator& comm_;
  bool overlap_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // per parameter
  // Per parameter, during an armed pass: its AccumulateGrad node and the hook's key there.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;
  // The pass in progress: gradients each bucket still waits for, which parameters were seen,
  // the next bucket to start, the started all-reduces, and a failure to start one.
  std::vector<int64_t> waiting_;
  std::vector<bool> seen_;
  size_t next_ = 0;
  std::vector<std::unique_ptr<Work>> works_;
  std::exception_ptr error_;
  bool armed_ = false;      // the hooks start buckets
  bool pass_open_ = false;  // arm() was called since the last finish()
  Clock::time_point armed_at_;
  StepTimeline timeline_;
};

}  // namespace mgpu::train
