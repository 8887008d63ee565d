// NCCL's and CUDA's return codes as exceptions (CommError naming the call, file:line and NCCL's
// own message, as nccl-tests' NCCLCHECK does), and waiting with a deadline on a non-blocking
// communicator (settle; Pending, one collective's completion). For train/comm's NCCL code only.
#pragma once

#include <cuda_runtime.h>
#include <fmt/core.h>
#include <nccl.h>
#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <mutex>

#include "train/comm/Communicator.h"  // defines: CommError
#include "train/comm/Poll.h"          // defines: poll_until

namespace mgpu::train {

#define MGPU_CUDA_CHECK(expr)                                                               \
  do {                                                                                      \
    const cudaError_t err_ = (expr);                                                        \
    if (err_ != cudaSuccess) {                                                              \
      throw CommError(fmt::format("{} failed at {}:{}: {}", #expr, __FILE__, __LINE__,      \
                                  cudaGetErrorString(err_)));                               \
    }                                                                                       \
  } while (0)

#define MGPU_NCCL_CHECK(expr, comm)                                                         \
  do {                                                                                      \
    const ncclResult_t res_ = (expr);                                                       \
    if (res_ != ncclSuccess) {                                                              \
      throw CommError(fmt::format("{} failed at {}:{}: {} ({})", #expr, __FILE__, __LINE__, \
                                  ncclGetErrorString(res_), ncclGetLastError(comm)));       \
    }                                                                                       \
  } while (0)

inline ncclDataType_t nccl_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kFloat16: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kInt64: return ncclInt64;
    case torch::kInt32: return ncclInt32;
    case torch::kUInt8: return ncclUint8;
    default: throw CommError(fmt::format("NCCL: unsupported dtype {}", c10::toString(t.scalar_type())));
  }
}

using Clock = std::chrono::steady_clock;

// The communicators are non-blocking (ncclConfig_t.blocking = 0): initialisation and the
// collectives never wait on the host, every wait is this file's own, with a deadline (destroy
// and abort are always blocking in NCCL, so they come after the CUDA graphs: Teardown.h). A call may return ncclInProgress; the communicator's state
// (ncclCommGetAsyncError) then says when it has finished. Returns that final state, or
// ncclInProgress if the deadline passed or stop() asked to stop first.
inline ncclResult_t settle(ncclComm_t comm, Clock::time_point deadline,
                           const std::function<bool()>& stop = {},
                           std::mutex* calls = nullptr) {
  ncclResult_t result = ncclInProgress;
  poll_until(
      [&] {
        ncclResult_t state = ncclSuccess;
        std::unique_lock<std::mutex> lock;
        if (calls) lock = std::unique_lock<std::mutex>(*calls);
        const ncclResult_t asked = ncclCommGetAsyncError(comm, &state);
        result = asked != ncclSuccess ? asked : state;
        return result != ncclInProgress;
      },
      [&] { return Clock::now() > deadline || (stop && stop()); });
  return result;
}

inline Clock::time_point after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(seconds));
}

// One collective's completion (an event recorded on the NCCL stream after it), or the end of
// the work queued on a stream so far (mark_enqueued).
struct Pending : QueueMark {
  explicit Pending(const char* what) : op(what), started(Clock::now()) {
    MGPU_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  }
  ~Pending() override { cudaEventDestroy(done); }
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;
  cudaEvent_t done = nullptr;
  const char* op;
  Clock::time_point started;
};

}  // namespace mgpu::train
