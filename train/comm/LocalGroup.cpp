// In-process collectives: each rank publishes its tensor, waits at a barrier, and computes the
// result itself in rank order (so every rank gets bit-identical sums), then waits again before
// anyone may publish the next tensor; each rank's collectives run on a thread of its own.
#include "train/comm/LocalGroup.h"

#include <fmt/core.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

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

// One collective of a rank, run by the rank's own thread.
struct Job {
  std::function<void()> run;
  std::promise<void> done;
  std::mutex mutex;
  std::string error;  // set when run threw
};

class LocalWork : public Work {
 public:
  explicit LocalWork(std::shared_ptr<Job> job) : job_(std::move(job)), done_(job_->done.get_future()) {}
  void wait() override { done_.get(); }
  bool test() override {
    return done_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
  std::string error() const override {
    std::lock_guard<std::mutex> lock(job_->mutex);
    return job_->error;
  }

 private:
  std::shared_ptr<Job> job_;
  std::future<void> done_;
};

// A rank's collectives run on a thread of its own, in the order they were started, so that
// the replica's thread goes on (with its backward pass) while a bucket is summed.
class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<SharedState> state, int rank)
      : state_(std::move(state)), rank_(rank), thread_([this] { loop(); }) {}

  // A collective still queued or running here cannot finish without this rank: its peers are
  // told at once instead of waiting for the deadline.
  ~LocalCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!queue_.empty() || busy_) {
        state_->abort(fmt::format("rank {}'s communicator was destroyed", rank_));
      }
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return state_->size(); }
  std::string backend() const override { return "local"; }

  std::unique_ptr<Work> all_reduce_sum_async(torch::Tensor tensor) override {
    return start([this, tensor]() mutable {
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
    start([this, tensor, root]() mutable {
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
  std::unique_ptr<Work> start(std::function<void()> run) {
    auto job = std::make_shared<Job>();
    job->run = std::move(run);
    auto work = std::make_unique<LocalWork>(job);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(job));
    }
    wake_.notify_all();
    return work;
  }

  void loop() {
    while (true) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
      }
      try {
        job->run();
        job->done.set_value();
      } catch (const std::exception& e) {
        {
          std::lock_guard<std::mutex> lock(job->mutex);
          job->error = e.what();
        }
        job->done.set_exception(std::current_exception());
      }
      std::lock_guard<std::mutex> lock(mutex_);
      busy_ = false;
    }
  }

  std::shared_ptr<SharedState> state_;
  int rank_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool busy_ = false, stopping_ = false;
  std::thread thread_;  // last: it starts once the members it uses exist
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
