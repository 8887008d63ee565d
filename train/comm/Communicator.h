// Communicator: the collective operations that data-parallel replicas need, behind one
// interface, so the trainer is the same code whatever moves the bytes.
#pragma once

#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace mgpu::train {

/// A collective failed: a peer died, never arrived, or the deadline passed.
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One replica's end of a group of world_size() replicas. Every rank must call the same
/// collectives in the same order; each call blocks until all ranks have taken part or the
/// group's deadline passes (CommError naming the rank and the operation).
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// "local" (threads of one process), "nccl", ...
  virtual std::string backend() const = 0;
  /// In place: every rank's tensor becomes the element-wise sum over all ranks.
  virtual void all_reduce_sum(torch::Tensor& tensor) = 0;
  /// In place: every rank's tensor becomes a copy of rank root's.
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  /// Wakes every rank blocked in (or later entering) a collective with a CommError carrying
  /// reason: how a failing replica stops its peers instead of leaving them waiting.
  virtual void abort(const std::string& reason) = 0;

  /// CUDA graphs: whether all_reduce_sum may be called while the current CUDA stream is being
  /// captured. It then only enqueues the collective, and after each replay the caller watches
  /// the replayed collectives with wait_for_enqueued.
  virtual bool can_capture() const { return false; }
  /// Blocks until the work queued so far on the current CUDA stream (a replayed graph with its
  /// collectives) has finished, failing with a CommError, as the collectives do, when a peer
  /// fails or the group's deadline passes: a dead peer never leaves a replay hanging.
  virtual void wait_for_enqueued(const char* /*what*/) {}
};

/// [world, n]: row r is rank r's row (flattened), on every rank; [1, n] without comm. An
/// all-gather through all_reduce_sum of zero-padded rows, which is exact (x + 0 == x).
torch::Tensor gather_rows(Communicator* comm, const torch::Tensor& row);

/// Every rank's text, in rank order, on every rank (gather_rows of the bytes; tensors on
/// device, as the communicator needs them). A collective: every rank must call it.
std::vector<std::string> gather_texts(Communicator* comm, const std::string& text,
                                      const torch::Device& device);

}  // namespace mgpu::train
