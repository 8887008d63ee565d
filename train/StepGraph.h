// StepGraph: the training step captured once as a CUDA graph and then replayed, one launch in
// place of the step's hundreds of kernel launches and their host work.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>

namespace mgpu::train {

class StepGraph {
 public:
  /// device: a CUDA device. Makes the graph's own stream there; nothing is captured yet.
  explicit StepGraph(torch::Device device);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  /// While a Scope lives, the graph's stream is the current stream of its device: the warm-up
  /// steps, the capture and the replays all run there. It starts after the work queued before
  /// it on the previous stream, and work queued after it waits for its work.
  class Scope {
   public:
    explicit Scope(StepGraph& graph);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    struct State;
    std::unique_ptr<State> state_;
  };

  /// Records step (device work only: no reads to the host, no host-dependent shapes) into the
  /// graph, inside a Scope. step's tensors must outlive the graph; their addresses are what
  /// each replay reads and writes. Throws std::runtime_error naming the failure.
  void capture(const std::function<void()>& step);
  /// Launches the captured step once on the current stream.
  void replay();
  bool captured() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mgpu::train
