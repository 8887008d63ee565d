#include "train/StepGraph.h"

#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <fmt/core.h>

#include <stdexcept>

namespace mgpu::train {

struct StepGraph::Impl {
  explicit Impl(torch::Device d)
      : device(d), stream(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, d.index())) {}
  torch::Device device;
  c10::cuda::CUDAStream stream;
  at::cuda::CUDAGraph graph;
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

StepGraph::Scope::~Scope() {
  at::cuda::CUDAEvent done;
  done.record(state_->stream);
  done.block(state_->previous);
}

void StepGraph::capture(const std::function<void()>& step) {
  TORCH_CHECK(!impl_->captured, "the training step is captured once");
  TORCH_CHECK(c10::cuda::getCurrentCUDAStream(impl_->device.index()) == impl_->stream,
              "StepGraph::capture outside its Scope");
  // A cast cached during capture would be reused by later replays with stale values.
  const bool cache = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);
  try {
    // Thread-local: the other replicas' threads may be capturing or running at the same time.
    impl_->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    step();
    impl_->graph.capture_end();
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
  impl_->graph.replay();
}

bool StepGraph::captured() const { return impl_->captured; }

}  // namespace mgpu::train
