// In-process collectives: each rank publishes its tensor, waits at a barrier, and computes the
// result itself in rank order (so every rank gets bit-identical sums), then waits again before
// anyone may publish the next tensor; each rank's collectives run on a thread of its own.
#include "train/comm/LocalGroup.h"

#include <fmt/core.h>

#include <condition_variable>
#include <mutex>

#include "train/comm/WorkQueue.h"  // defines: WorkQueue

namespace mgpu::train {

namespace {

class SharedState {
 public:
  SharedState(int n, std::chrono::milliseconds timeout)
      : n_(n), timeout_(timeout), slots_(static_cast<size_t>(n)) {}

  // Blocks until all n ranks have arrived at this barrier, or throws CommError.
  void barrier(int rank, const char* op) {
    std::unique_lock<std::mutex> lock(mutex_);
    check_aborted(rank, op);
    const uint64_t generation = generation_;
    arrived_.push_back(rank);
    if (static_cast<int>(arrived_.size()) == n_) {
      arrived_.clear();
      ++generation_;
      cv_.notify_all();
      return;
    }
    const bool done = cv_.wait_for(lock, timeout_, [&] {
      return generation_ != generation || !abort_reason_.empty();
    });
    if (generation_ != generation) return;
    check_aborted(rank, op);
    if (!done) {
      std::string missing;
      for (int r = 0; r < n_; ++r) {
        if (std::find(arrived_.begin(), arrived_.end(), r) == arrived_.end()) {
          missing += (missing.empty() ? "" : ", ") + std::to_string(r);
        }
      }
      const std::string reason = fmt::format(
          "rank {}: {} timed out after {:.1f} s waiting for rank(s) {}", rank, op,
          std::chrono::duration<double>(timeout_).count(), missing);
      abort_reason_ = reason;
      cv_.notify_all();
      throw CommError(reason);
    }
  }

  void abort(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (abort_reason_.empty()) abort_reason_ = reason;
    cv_.notify_all();
  }

  torch::Tensor& slot(int rank) { return slots_[static_cast<size_t>(rank)]; }
  int size() const { return n_; }

 private:
  void check_aborted(int rank, const char* op) const {
    if (!abort_reason_.empty()) {
      throw CommError(fmt::format("rank {}: {} aborted: {}", rank, op, abort_reason_));
    }
  }

  const int n_;
  const std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;
  std::vector<int> arrived_;
  std::string abort_reason_;
  std::vector<torch::Tensor> slots_;
};

// A rank's collectives run on a thread of its own, in the order they were started, so that
// the replica's thread goes on (with its backward pass) while a bucket is summed.
class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<SharedState> state, int rank)
      : state_(std::move(state)), rank_(rank) {}

  // A collective still queued or running here cannot finish without this rank: its peers are
  // told at once instead of waiting for the deadline.
  ~LocalCommunicator() override {
    if (!queue_.idle()) state_->abort(fmt::format("rank {}'s communicator was destroyed", rank_));
  }

  int rank() const override { return rank_; }
  int world_size() const override { return state_->size(); }
  std::string backend() const override { return "local"; }

  std::unique_ptr<Work> all_reduce_sum_async(torch::Tensor tensor) override {
    return queue_.start([this, tensor]() mutable {
      if (world_size() == 1) return;
      state_->slot(rank_) = tensor;
      state_->barrier(rank_, "all_reduce");
      torch::NoGradGuard no_grad;
      // Every rank adds the slots in rank order: the same sum, bit for bit, everywhere.
      auto sum = state_->slot(0).to(tensor.device(), /*non_blocking=*/false, /*copy=*/true);
      for (int r = 1; r < world_size(); ++r) sum += state_->slot(r).to(tensor.device());
      state_->barrier(rank_, "all_reduce");  // nobody overwrites a slot still being read
      tensor.copy_(sum);
      state_->slot(rank_) = torch::Tensor();
    });
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    queue_.start([this, tensor, root]() mutable {
      if (world_size() == 1) return;
      if (rank_ == root) state_->slot(root) = tensor;
      state_->barrier(rank_, "broadcast");
      torch::NoGradGuard no_grad;
      if (rank_ != root) tensor.copy_(state_->slot(root));
      state_->barrier(rank_, "broadcast");
      if (rank_ == root) state_->slot(root) = torch::Tensor();
    })->wait();
  }

  void abort(const std::string& reason) override { state_->abort(reason); }

 private:
  std::shared_ptr<SharedState> state_;
  int rank_;
  WorkQueue queue_;  // last: its thread ends before the members its jobs use
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_local_group(int n,
                                                            std::chrono::milliseconds timeout) {
  auto state = std::make_shared<SharedState>(n, timeout);
  std::vector<std::unique_ptr<Communicator>> group;
  for (int r = 0; r < n; ++r) group.push_back(std::make_unique<LocalCommunicator>(state, r));
  return group;
}

}  // namespace mgpu::train
