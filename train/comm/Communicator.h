// Communicator: the collective operations that data-parallel replicas need, behind one
// interface, so the trainer is the same code whatever moves the bytes.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mgpu::train {

/// A collective failed: a peer died, never arrived, or the deadline passed.
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A collective in flight (Communicator::all_reduce_sum_async): its tensor belongs to the
/// collective until wait() has returned.
class Work {
 public:
  virtual ~Work() = default;
  /// Returns once the result may be used by the caller's next operation: on the CPU the
  /// result is there; with NCCL the caller's current CUDA stream waits for it, and the host
  /// does not. Throws CommError if the collective failed. Call it once.
  virtual void wait() = 0;
  /// Whether the collective has finished, without waiting.
  virtual bool test() = 0;
  /// Why it failed, once it has (empty while it runs or after a success).
  virtual std::string error() const = 0;
};

/// A point in a device's queue of work (Communicator::mark_enqueued); what it holds is the
/// communicator's own.
class QueueMark {
 public:
  virtual ~QueueMark() = default;
};

/// One replica's end of a group of world_size() replicas. Every rank must call the same
/// collectives in the same order; a blocking call returns when all ranks have taken part, or
/// throws when the group's deadline passes (CommError naming the rank and the operation).
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// "local" (threads of one process), "nccl", ...
  virtual std::string backend() const = 0;
  /// Starts an in-place sum over all ranks of a contiguous tensor and returns at once; the
  /// collectives a rank starts run in the order it started them, after its earlier ones.
  /// The tensor must stay untouched until the returned work's wait().
  virtual std::unique_ptr<Work> all_reduce_sum_async(torch::Tensor tensor) = 0;
  /// In place: every rank's tensor becomes the element-wise sum over all ranks (the
  /// asynchronous one, waited for; with NCCL the host waits too, unless a CUDA graph is being
  /// captured).
  virtual void all_reduce_sum(torch::Tensor& tensor) { all_reduce_sum_async(tensor)->wait(); }
  /// In place: every rank's tensor becomes a copy of rank root's.
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  /// Wakes every rank blocked in (or later entering) a collective with a CommError carrying
  /// reason: how a failing replica stops its peers instead of leaving them waiting.
  virtual void abort(const std::string& reason) = 0;

  /// CUDA graphs: whether the all-reduces may be called while the current CUDA stream is
  /// being captured. They then only enqueue the collective, and after each replay the caller
  /// hands the replayed collectives to the watchdog with watch_enqueued.
  virtual bool can_capture() const { return false; }
  /// A mark after the work queued so far on the current CUDA stream (a step, a replayed graph
  /// with its collectives), to wait for later with wait_for_mark. nullptr where the host never
  /// runs ahead of the work (the CPU's backends: a collective has finished when its wait()
  /// returns).
  virtual std::shared_ptr<QueueMark> mark_enqueued(const char* /*what*/) { return nullptr; }
  /// Blocks until the work before mark has finished, failing with a CommError, as the
  /// collectives do, when a peer fails, the group is aborted, or the group's deadline passes
  /// first: the host waits only in ways that a dead peer cannot hang.
  virtual void wait_for_mark(const QueueMark& /*mark*/) {}
  /// Blocks until the work queued so far on the current CUDA stream has finished (a mark, then
  /// wait_for_mark): where the host needs a value from the device.
  void wait_for_enqueued(const char* what) {
    if (const auto mark = mark_enqueued(what)) wait_for_mark(*mark);
  }
  /// Without waiting: the group fails (as above) if the work queued so far on the current CUDA
  /// stream has not finished by the deadline.
  virtual void watch_enqueued(const char* /*what*/) {}
};

/// [world, n]: row r is rank r's row (flattened), on every rank; [1, n] without comm. An
/// all-gather through all_reduce_sum of zero-padded rows, which is exact (x + 0 == x).
torch::Tensor gather_rows(Communicator* comm, const torch::Tensor& row);

/// Every rank's text, in rank order, on every rank (gather_rows of the bytes; tensors on
/// device, as the communicator needs them). A collective: every rank must call it.
std::vector<std::string> gather_texts(Communicator* comm, const std::string& text,
                                      const torch::Device& device);

}  // namespace mgpu::train
