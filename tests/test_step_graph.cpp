// StepGraph on a GPU: a capture that fails ends cleanly (the stream leaves capture mode, no
// destructor throws, the message names the flag) and the device goes on working; and a
// replica thread keeps cuDNN's autotuning results across calls (train/Workers.h). Skipped
// without a GPU: they are part of the GPU checks (scripts/gpu-check.sh).
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

#include "train/StepGraph.h"
#include "train/Workers.h"

using namespace mgpu;

// A step that reads a value on the host cannot be captured (the device runs nothing during a
// capture): the capture fails with mgpu's message, not a SIGABRT from a destructor.
TEST(StepGraphGpu, AFailedCaptureEndsCleanlyWithItsMessage) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  const torch::Device gpu(torch::kCUDA, 0);
  auto x = torch::ones({1024}, torch::TensorOptions().device(gpu));
  train::StepGraph graph(gpu);
  {
    train::StepGraph::Scope scope(graph);
    x.mul_(2);  // an eager step first, as training runs three
    try {
      graph.capture([&] { (void)x.sum().item<float>(); });
      ADD_FAILURE() << "a host read was captured";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("--cuda-graphs: capturing the training step on cuda:0 "
                                           "failed (train without --cuda-graphs)"),
                std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(graph.captured());
  }  // the Scope ends without throwing
  EXPECT_EQ(x.sum().item<float>(), 2048.0f);  // the device and its streams still work
  auto y = x * 3;
  EXPECT_EQ(y.sum().item<float>(), 6144.0f);
}

// cuDNN's autotuning cache is per thread: on a replica's persistent thread the second call's
// first convolution of a shape reuses what the first call found. (Printed, and checked with a
// wide margin: autotuning tries every algorithm, which takes tens of times one run.)
TEST(StepGraphGpu, AReplicaThreadKeepsCudnnsAutotuningAcrossCalls) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  const torch::Device gpu(torch::kCUDA, 0);
  const bool was = at::globalContext().benchmarkCuDNN();
  at::globalContext().setBenchmarkCuDNN(true);
  auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(96, 96, 3).padding(1));
  conv->to(gpu);
  const auto x = torch::randn({64, 96, 16, 16}, torch::TensorOptions().device(gpu));
  train::Workers workers(2);
  double ms[2] = {0, 0};
  for (int call = 0; call < 2; ++call) {
    workers.run([&](size_t r) {
      if (r != 1) return;
      torch::NoGradGuard no_grad;
      torch::cuda::synchronize();
      const auto start = std::chrono::steady_clock::now();
      (void)conv->forward(x);
      torch::cuda::synchronize();
      ms[call] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count();
    });
  }
  at::globalContext().setBenchmarkCuDNN(was);
  std::printf("first forward on the replica thread: %.3f ms (autotuning), in the next call: "
              "%.3f ms\n",
              ms[0], ms[1]);
  EXPECT_LT(ms[1], ms[0] / 3);
}
