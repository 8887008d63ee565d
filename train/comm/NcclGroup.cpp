// The hand-rolled NCCL all-reduce: events order the NCCL stream after the compute stream and
// back, every NCCL and CUDA call is checked, and a stuck peer ends in an abort, not a hang.
#include "train/comm/NcclGroup.h"

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "data/InputError.h"

#ifdef MGPU_WITH_NCCL
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "train/comm/NcclCheck.h"  // defines: MGPU_NCCL_CHECK, MGPU_CUDA_CHECK, settle, after
#endif

namespace mgpu::train {

#ifndef MGPU_WITH_NCCL

std::vector<std::unique_ptr<Communicator>> make_nccl_group(const std::vector<torch::Device>&,
                                                           double) {
  throw data::InputError("this mgpu was built with MGPU_WITH_NCCL=OFF: no NCCL backend");
}

std::vector<std::unique_ptr<Communicator>> make_nccl_ranks(const std::vector<torch::Device>&,
                                                           c10d::Store&, int, int, double) {
  throw data::InputError("this mgpu was built with MGPU_WITH_NCCL=OFF: no NCCL backend");
}

#else

namespace {

// What the ranks of one process share: the reason of the first abort.
struct GroupState {
  std::mutex mutex;
  std::string abort_reason;
  std::atomic<bool> aborted{false};
};

class NcclCommunicator;

// Work::wait makes the caller's stream wait for the collective; the host never waits here.
class NcclWork : public Work {
 public:
  NcclWork(NcclCommunicator* comm, std::shared_ptr<Pending> pending)
      : comm_(comm), pending_(std::move(pending)) {}
  void wait() override;
  bool test() override;
  std::string error() const override;

 private:
  NcclCommunicator* comm_;
  std::shared_ptr<Pending> pending_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int world, torch::Device device, double timeout_s,
                   std::shared_ptr<GroupState> state)
      : comm_(comm), rank_(rank), world_(world), device_(device), timeout_s_(timeout_s),
        state_(std::move(state)) {
    c10::cuda::CUDAGuard guard(device_);
    stream_ = std::make_unique<c10::cuda::CUDAStream>(
        c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device_.index()));
    MGPU_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    watchdog_ = std::thread([this] { watch(); });
  }

  // The owner destroys every CUDA graph that captured this communicator's collectives first
  // (train/Teardown.h): NCCL's destroy and abort wait for those graphs to go. After a failure
  // the communicator is aborted: that first tells the device's NCCL kernels to quit, then (the
  // last communicator of the process) waits for its work and frees every communicator, which
  // with the graphs gone cannot wait forever. Otherwise it is finalized, with a deadline, and
  // destroyed. Nothing here throws.
  ~NcclCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(watch_mutex_);
      stopping_ = true;
    }
    watch_wake_.notify_all();
    watchdog_.join();
    pending_.clear();
    cudaEventDestroy(ready_);
    if (!comm_) return;
    if (failed_ || state_->aborted) {
      ncclCommAbort(comm_);
      return;
    }
    const ncclResult_t finalized = ncclCommFinalize(comm_);
    if ((finalized == ncclSuccess || finalized == ncclInProgress) &&
        settle(comm_, after(timeout_s_)) == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "nccl"; }

  std::unique_ptr<Work> all_reduce_sum_async(torch::Tensor tensor) override {
    return std::make_unique<NcclWork>(this, launch("all_reduce", tensor, [&](cudaStream_t s) {
      return ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                           nccl_type(tensor), ncclSum, comm_, s);
    }));
  }

  // Blocking, as the interface promises: the host waits too (unless the stream is captured).
  void all_reduce_sum(torch::Tensor& tensor) override {
    all_reduce_sum_async(tensor)->wait();
    if (!capturing()) wait_for_enqueued("all_reduce");
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    NcclWork(this, launch("broadcast", tensor, [&](cudaStream_t s) {
      return ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                           nccl_type(tensor), root, comm_, s);
    })).wait();
    if (!capturing()) wait_for_enqueued("broadcast");
  }

  bool can_capture() const override { return true; }

  std::shared_ptr<QueueMark> mark_enqueued(const char* what) override {
    c10::cuda::CUDAGuard guard(device_);
    auto queued = std::make_shared<Pending>(what);
    MGPU_CUDA_CHECK(cudaEventRecord(queued->done, current()));
    return queued;
  }

  // The host waits for the mark's event, polling it, the group's failure (which the watchdog
  // and the other local ranks set) and the deadline, never in a call that cannot return: the
  // trainer's bound on the steps in flight (Trainer.cpp) and the reads of device values.
  void wait_for_mark(const QueueMark& mark) override {
    const auto& queued = static_cast<const Pending&>(mark);
    const auto deadline = after(timeout_s_);
    poll_until(
        [&] {
          const cudaError_t q = cudaEventQuery(queued.done);
          if (q != cudaErrorNotReady) MGPU_CUDA_CHECK(q);
          return q == cudaSuccess;
        },
        [&] {
          if (state_->aborted) fail(queued.op, "aborted: " + reason());
          if (Clock::now() > deadline) {
            fail(queued.op,
                 fmt::format("timed out after {:.1f} s waiting for its peers", timeout_s_));
          }
          return false;
        });
  }

  // A replayed graph's collectives: the watchdog watches them; the host goes on.
  void watch_enqueued(const char* what) override {
    c10::cuda::CUDAGuard guard(device_);
    auto queued = std::make_shared<Pending>(what);
    MGPU_CUDA_CHECK(cudaEventRecord(queued->done, current()));
    watch_later(std::move(queued));
  }

  void abort(const std::string& reason) override {
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (state_->abort_reason.empty()) state_->abort_reason = reason;
    state_->aborted = true;
  }

  std::string failure() {
    return failed_ || state_->aborted ? reason() : std::string();
  }

  void check_aborted(const char* op) {
    if (state_->aborted) fail(op, "aborted: " + reason());
  }

  // The consumer's side: the current stream waits for the collective (the host does not).
  void join(const Pending& pending) {
    check_aborted(pending.op);
    c10::cuda::CUDAGuard guard(device_);
    MGPU_CUDA_CHECK(cudaStreamWaitEvent(current(), pending.done, 0));
  }

 private:
  cudaStream_t current() const { return c10::cuda::getCurrentCUDAStream(device_.index()).stream(); }

  bool capturing() const {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    MGPU_CUDA_CHECK(cudaStreamIsCapturing(current(), &capture));
    return capture != cudaStreamCaptureStatusNone;
  }

  // Queues the collective on the NCCL stream, after the work queued so far on the current
  // stream, and returns its completion (watched by the watchdog unless a graph is captured).
  template <typename Launch>
  std::shared_ptr<Pending> launch(const char* op, torch::Tensor& tensor, Launch nccl_call) {
    TORCH_CHECK(tensor.is_cuda() && tensor.device() == device_ && tensor.is_contiguous(),
                "NCCL ", op, ": rank ", rank_, " needs a contiguous tensor on ", device_.str());
    check_aborted(op);
    c10::cuda::CUDAGuard guard(device_);
    // The NCCL stream waits for the producer (the backward pass so far).
    MGPU_CUDA_CHECK(cudaEventRecord(ready_, current()));
    MGPU_CUDA_CHECK(cudaStreamWaitEvent(stream_->stream(), ready_, 0));
    c10::cuda::CUDACachingAllocator::recordStream(tensor.storage().data_ptr(), *stream_);
    ncclResult_t launched;
    {
      std::lock_guard<std::mutex> lock(calls_);
      launched = nccl_call(stream_->stream());
    }
    if (launched != ncclSuccess && launched != ncclInProgress) {
      fail(op, fmt::format("could not be queued: {} ({})", ncclGetErrorString(launched),
                           ncclGetLastError(comm_)));
    }
    // Non-blocking: the collective may still be on its way into the stream, queued by NCCL's
    // own thread. While a CUDA graph is captured that thread adds to the capture, so an abort
    // must not end the wait (the capture would be ended under it): only the deadline does.
    const bool captured = capturing();
    const ncclResult_t queued = settle(
        comm_, after(timeout_s_), [&] { return !captured && state_->aborted.load(); }, &calls_);
    if (queued == ncclInProgress) {
      fail(op, state_->aborted ? "aborted: " + reason()
                               : fmt::format("was not queued within {:.1f} s", timeout_s_));
    }
    if (queued != ncclSuccess) {
      fail(op, fmt::format("NCCL reported {} ({})", ncclGetErrorString(queued),
                           ncclGetLastError(comm_)));
    }
    auto pending = std::make_shared<Pending>(op);
    MGPU_CUDA_CHECK(cudaEventRecord(pending->done, stream_->stream()));
    // While a CUDA graph is captured nothing runs: its replays are watched (watch_enqueued).
    // The NCCL stream joined the capture, if there is one, through its wait on ready_.
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    MGPU_CUDA_CHECK(cudaStreamIsCapturing(stream_->stream(), &capture));
    if (capture == cudaStreamCaptureStatusNone) watch_later(pending);
    return pending;
  }

  void watch_later(std::shared_ptr<Pending> pending) {
    std::lock_guard<std::mutex> lock(watch_mutex_);
    pending_.push_back(std::move(pending));
  }

  // The watchdog, as ProcessGroupNCCL's: every few milliseconds, off the step's path, it looks
  // at NCCL's asynchronous error and at the collectives not yet finished; an error, or one
  // running past the deadline, fails the group, so that every later launch and host wait of
  // every local rank throws at once. (The communicator itself is aborted by its destructor,
  // after the graphs: Teardown.h.)
  void watch() {
    c10::cuda::CUDAGuard guard(device_);
    std::unique_lock<std::mutex> lock(watch_mutex_);
    while (!stopping_) {
      watch_wake_.wait_for(lock, std::chrono::milliseconds(kWatchEveryMs));
      if (stopping_ || failed_) continue;
      // NCCL's calls on one communicator must not overlap (its threadsafety notes; this one
      // can complete a group job): a round is skipped while the step is in one.
      ncclResult_t async = ncclSuccess, asked = ncclInProgress;
      if (std::unique_lock<std::mutex> calls(calls_, std::try_to_lock); calls.owns_lock()) {
        asked = ncclCommGetAsyncError(comm_, &async);
      }
      if (asked == ncclSuccess && async != ncclSuccess && async != ncclInProgress) {
        mark_failed(pending_.empty() ? "collective" : pending_.front()->op,
                    fmt::format("NCCL reported {} ({})", ncclGetErrorString(async),
                                ncclGetLastError(comm_)));
        continue;
      }
      while (!pending_.empty()) {
        const cudaError_t q = cudaEventQuery(pending_.front()->done);
        if (q == cudaSuccess) {
          pending_.pop_front();
        } else if (q != cudaErrorNotReady) {
          mark_failed(pending_.front()->op, cudaGetErrorString(q));
          break;
        } else {
          if (Clock::now() - pending_.front()->started > seconds(timeout_s_)) {
            mark_failed(pending_.front()->op,
                        fmt::format("timed out after {:.1f} s waiting for its peers", timeout_s_));
          }
          break;
        }
      }
    }
  }

  static Clock::duration seconds(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  void mark_failed(const char* op, const std::string& why) {
    failed_ = true;
    abort(fmt::format("rank {}: NCCL {} {}", rank_, op, why));
  }

  // Marks the failure (the other local ranks stop too) and throws. The communicator itself is
  // aborted only by its destructor, after its owner has destroyed the CUDA graphs that
  // captured it: aborted here, while a graph lives, NCCL would wait for that graph forever.
  [[noreturn]] void fail(const char* op, const std::string& why) {
    const std::string message = fmt::format("rank {}: NCCL {} {}", rank_, op, why);
    failed_ = true;
    abort(message);
    throw CommError(message);
  }

  std::string reason() {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->abort_reason;
  }

  static constexpr int kWatchEveryMs = 20;
  ncclComm_t comm_;
  int rank_, world_;
  torch::Device device_;
  double timeout_s_;
  std::shared_ptr<GroupState> state_;
  std::unique_ptr<c10::cuda::CUDAStream> stream_;
  cudaEvent_t ready_ = nullptr;
  std::atomic<bool> failed_{false};
  std::mutex calls_;  // held around every NCCL call on comm_ after construction
  std::mutex watch_mutex_;
  std::condition_variable watch_wake_;
  std::deque<std::shared_ptr<Pending>> pending_;  // launched, not yet seen finished
  bool stopping_ = false;
  std::thread watchdog_;  // last: it starts once the members it uses exist
};

void NcclWork::wait() { comm_->join(*pending_); }

bool NcclWork::test() { return cudaEventQuery(pending_->done) == cudaSuccess; }

std::string NcclWork::error() const { return comm_->failure(); }

void require_visible(const torch::Device& d) {
  const int64_t visible = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
  if (!d.is_cuda() || d.index() < 0 || d.index() >= visible) {
    throw data::InputError(fmt::format(
        "the NCCL backend needs CUDA GPUs: {} is not one of the {} visible to this process",
        d.str(), visible));
  }
}

// This process's communicators, ranks first_rank.. of world on devices, joined inside one
// group (several devices of one process must join together, or the first would wait for the
// others forever), non-blocking, each ready or failed before this returns.
std::vector<std::unique_ptr<Communicator>> join(const std::vector<torch::Device>& devices,
                                                const ncclUniqueId& id, int first_rank, int world,
                                                double timeout_s) {
  std::vector<ncclComm_t> comms(devices.size(), nullptr);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const auto abort_all = [&] {
    for (auto c : comms) {
      if (c) ncclCommAbort(c);
    }
  };
  MGPU_NCCL_CHECK(ncclGroupStart(), nullptr);
  for (size_t i = 0; i < devices.size(); ++i) {
    MGPU_CUDA_CHECK(cudaSetDevice(devices[i].index()));
    const ncclResult_t r = ncclCommInitRankConfig(&comms[i], world, id,
                                                  first_rank + static_cast<int>(i), &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      ncclGroupEnd();
      abort_all();
      MGPU_NCCL_CHECK(r, nullptr);
    }
  }
  const ncclResult_t ended = ncclGroupEnd();
  if (ended != ncclSuccess && ended != ncclInProgress) {
    abort_all();
    MGPU_NCCL_CHECK(ended, nullptr);
  }
  const auto deadline = after(timeout_s);
  for (size_t i = 0; i < comms.size(); ++i) {
    const ncclResult_t state = settle(comms[i], deadline);
    if (state != ncclSuccess) {
      const std::string why =
          state == ncclInProgress
              ? fmt::format("did not form within {:.1f} s (a rank never joined?)", timeout_s)
              : fmt::format("failed: {} ({})", ncclGetErrorString(state),
                            ncclGetLastError(comms[i]));
      abort_all();
      throw CommError(fmt::format("rank {}: the NCCL group of {} ranks {}",
                                  first_rank + static_cast<int>(i), world, why));
    }
  }
  auto state = std::make_shared<GroupState>();
  std::vector<std::unique_ptr<Communicator>> group;
  for (size_t i = 0; i < devices.size(); ++i) {
    group.push_back(std::make_unique<NcclCommunicator>(
        comms[i], first_rank + static_cast<int>(i), world, devices[i], timeout_s, state));
  }
  return group;
}

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_nccl_group(const std::vector<torch::Device>& devices,
                                                           double timeout_s) {
  for (const auto& d : devices) require_visible(d);
  ncclUniqueId id;
  MGPU_NCCL_CHECK(ncclGetUniqueId(&id), nullptr);
  return join(devices, id, 0, static_cast<int>(devices.size()), timeout_s);
}

std::vector<std::unique_ptr<Communicator>> make_nccl_ranks(
    const std::vector<torch::Device>& devices, c10d::Store& store, int first_rank, int world,
    double timeout_s) {
  for (const auto& d : devices) require_visible(d);
  ncclUniqueId id;
  const std::string key = "mgpu/nccl_unique_id";
  if (first_rank == 0) {
    MGPU_NCCL_CHECK(ncclGetUniqueId(&id), nullptr);
    const auto* bytes = reinterpret_cast<const uint8_t*>(&id);
    store.set(key, std::vector<uint8_t>(bytes, bytes + sizeof id));
  } else {
    const auto bytes = store.get(key);  // waits up to the store's timeout
    if (bytes.size() != sizeof id) {
      throw CommError(fmt::format("rank {}: the NCCL unique id in the store has {} bytes, not {}",
                                  first_rank, bytes.size(), sizeof id));
    }
    std::memcpy(&id, bytes.data(), sizeof id);
  }
  return join(devices, id, first_rank, world, timeout_s);
}

#endif

}  // namespace mgpu::train
