#include "train/StepGraph.h"

#include <ATen/autocast_mode.h>
#include <ATen/core/CachingHostAllocator.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <fmt/core.h>

#include <memory>
#include <stdexcept>

namespace mgpu::train {

// LibTorch's CUDAGraph, with what a failed capture must undo that it keeps to itself
// (protected members in LibTorch 2.11): whether capture_end got as far as ending the capture,
// and the generators capture_begin put into capture mode. (Not in an anonymous namespace:
// StepGraph::Impl, which holds one, is not.)
struct StepGraphCuda : at::cuda::CUDAGraph {
  bool ended() const { return capture_ended_; }
  // Left capturing, a generator refuses every later eager draw on its device.
  void end_generator_capture() {
    for (auto& [state, increment] : captured_generator_states_) state->capturing_ = false;
  }
};

struct StepGraph::Impl {
  explicit Impl(torch::Device d)
      : device(d), stream(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, d.index())),
        graph(std::make_unique<StepGraphCuda>()) {}
  torch::Device device;
  c10::cuda::CUDAStream stream;
  std::unique_ptr<StepGraphCuda> graph;
  bool captured = false;
};

StepGraph::StepGraph(torch::Device device) {
  TORCH_CHECK(device.is_cuda(), "a CUDA graph needs a CUDA device, not ", device.str());
  impl_ = std::make_unique<Impl>(device);
}

StepGraph::~StepGraph() = default;

struct StepGraph::Scope::State {
  c10::cuda::CUDAStream previous;
  c10::cuda::CUDAStream stream;
  c10::cuda::CUDAStreamGuard guard;
};

StepGraph::Scope::Scope(StepGraph& graph) {
  const auto index = graph.impl_->device.index();
  const auto previous = c10::cuda::getCurrentCUDAStream(index);
  const auto stream = graph.impl_->stream;
  at::cuda::CUDAEvent ready;
  ready.record(previous);
  ready.block(stream);
  state_.reset(new State{previous, stream, c10::cuda::CUDAStreamGuard(stream)});
}

// A destructor must not throw, and this one may run while an exception unwinds: the previous
// stream waits for the graph stream's work unless that fails (a stream left capturing by a
// failure cannot be waited on; capture() ends its capture, so this is a last resort).
StepGraph::Scope::~Scope() {
  try {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(state_->stream.stream(), &status) != cudaSuccess ||
        status != cudaStreamCaptureStatusNone) {
      return;
    }
    at::cuda::CUDAEvent done;
    done.record(state_->stream);
    done.block(state_->previous);
  } catch (const std::exception& e) {
    TORCH_WARN("StepGraph: the stream after the training step could not wait for it: ",
               e.what());
  }
}

namespace {

// After a capture failed part-way: ends the stream's capture if it is still on (discarding the
// partial graph), takes the generators out of capture mode, sends the device and pinned-host
// allocators' requests back from the graph's pool and releases it (unless capture_end got as
// far as ending the capture: then the graph's own reset() releases it), and clears CUDA's last
// error. Never throws: it runs on the way out of a failure.
void abandon_capture(StepGraphCuda& graph, const c10::cuda::CUDAStream& stream, c10::DeviceIndex device,
                     at::cuda::MempoolId_t pool) noexcept {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream.stream(), &status) == cudaSuccess &&
      status != cudaStreamCaptureStatusNone) {
    cudaGraph_t partial = nullptr;
    cudaStreamEndCapture(stream.stream(), &partial);  // fails for an invalidated capture
    if (partial) cudaGraphDestroy(partial);
  }
  graph.end_generator_capture();
  // Each throws if capture_begin never got that far, or capture_end did it already.
  try {
    c10::cuda::CUDACachingAllocator::endAllocateToPool(device, pool);
  } catch (const std::exception&) {
  }
  try {
    at::getHostAllocator(at::kCUDA)->end_allocate_to_pool(pool);
  } catch (const std::exception&) {
  }
  if (!graph.ended()) {
    try {
      c10::cuda::CUDACachingAllocator::releasePool(device, pool);
    } catch (const std::exception&) {
    }
    try {
      at::getHostAllocator(at::kCUDA)->release_pool(pool);
    } catch (const std::exception&) {
    }
  }
  cudaGetLastError();
}

}  // namespace

void StepGraph::capture(const std::function<void()>& step) {
  TORCH_CHECK(!impl_->captured, "the training step is captured once");
  TORCH_CHECK(c10::cuda::getCurrentCUDAStream(impl_->device.index()) == impl_->stream,
              "StepGraph::capture outside its Scope");
  // A cast cached during capture would be reused by later replays with stale values.
  const bool cache = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);
  // The graph's memory pool is ours, so that a failed capture can give it back.
  const auto pool = at::cuda::graph_pool_handle();
  try {
    try {
      // Thread-local: the other replicas' threads may be capturing or running at the same time.
      impl_->graph->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
      step();
      impl_->graph->capture_end();
    } catch (...) {
      abandon_capture(*impl_->graph, impl_->stream, impl_->device.index(), pool);
      impl_->graph = std::make_unique<StepGraphCuda>();  // the failed one, discarded
      throw;
    }
  } catch (const std::exception& e) {
    at::autocast::set_autocast_cache_enabled(cache);
    throw std::runtime_error(
        fmt::format("--cuda-graphs: capturing the training step on {} failed (train without "
                    "--cuda-graphs): {}",
                    impl_->device.str(), e.what()));
  }
  at::autocast::set_autocast_cache_enabled(cache);
  impl_->captured = true;
}

void StepGraph::replay() {
  TORCH_CHECK(impl_->captured, "StepGraph::replay before capture");
  impl_->graph->replay();
}

bool StepGraph::captured() const { return impl_->captured; }

}  // namespace mgpu::train
