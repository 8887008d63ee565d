// The premise of the bound on steps in flight (kStepsInFlight, train/Trainer.h), measured on the
// GPU: a stream that cannot make progress (here a host function that waits on the stream, as a
// collective waits for a dead peer) accepts only so many kernel launches before the next one
// blocks the host. The GPU scripts compare the figure with the launches of a step.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include "train/Trainer.h"

namespace {

// Holds the stream until released.
void CUDART_CB hold(void* gate) {
  auto* open = static_cast<std::atomic<bool>*>(gate);
  while (!open->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

}  // namespace

TEST(CudaLaunchQueue, StalledStreamAcceptsLaunchesUntilOneBlocks) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  constexpr int64_t kMostLaunches = 200000;  // a queue that never blocks is reported as such
  const auto stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, 0);
  c10::cuda::CUDAStreamGuard on_stream(stream);
  auto x = torch::zeros({1}, torch::kCUDA);
  x.add_(1);  // the kernel is loaded before the stall
  ASSERT_EQ(cudaStreamSynchronize(stream.stream()), cudaSuccess);

  std::atomic<bool> open{false};
  ASSERT_EQ(cudaLaunchHostFunc(stream.stream(), hold, &open), cudaSuccess);
  std::atomic<int64_t> launched{0};
  std::thread launcher([&] {
    c10::cuda::CUDAStreamGuard guard(stream);
    while (launched < kMostLaunches && !open) {
      x.add_(1);  // one kernel launch
      ++launched;
    }
  });
  // Blocked: no launch returned for 500 ms.
  int64_t seen = -1;
  while (launched != seen && launched < kMostLaunches) {
    seen = launched;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  const int64_t accepted = launched;
  open = true;
  launcher.join();
  ASSERT_EQ(cudaStreamSynchronize(stream.stream()), cudaSuccess);
  EXPECT_EQ(x.item<float>(), static_cast<float>(1 + launched))
      << "every accepted launch ran once the stream was released";
  if (accepted >= kMostLaunches) {
    std::cout << "launch queue: a stalled stream accepted " << kMostLaunches
              << " launches without blocking\n";
  } else {
    std::cout << "launch queue: a stalled stream accepted " << accepted
              << " kernel launches, then the next one blocked the host (the trainer queues at "
              << mgpu::train::kStepsInFlight << " steps at most with peers)\n";
  }
  RecordProperty("accepted_launches", std::to_string(accepted));
  EXPECT_GT(accepted, 0);
}
