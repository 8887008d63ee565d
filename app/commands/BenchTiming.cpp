// mgpu bench's measurements: timed steps, the all-reduce alone, one step's timeline.
#include "app/commands/BenchTiming.h"

#include <c10/cuda/CUDACachingAllocator.h>
#include <fmt/core.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "models/Registry.h"           // defines: make_model, count_parameters
#include "train/Workers.h"             // defines: Workers
#include "train/comm/LocalGroup.h"     // defines: make_local_group
#include "train/comm/NcclGroup.h"      // defines: make_nccl_group

namespace mgpu::app {

using namespace mgpu::train;
namespace fs = std::filesystem;

// Milliseconds per sum all-reduce of a `numel`-float buffer (the model's flat gradient buffer),
// every rank on a thread of its own as in training, after a few untimed calls; rank 0's mean.
double time_all_reduce(std::vector<std::unique_ptr<Communicator>> comms,
                       const std::vector<torch::Device>& devices, int64_t numel) {
  constexpr int kWarmup = 5, kTimed = 50;
  double ms = 0;
  Workers workers(comms.size());
  const auto errors = workers.run([&](size_t r) {
    try {
      c10::DeviceGuard guard(devices[r]);
      auto buffer = torch::zeros({numel}, torch::TensorOptions().device(devices[r]));
      for (int i = 0; i < kWarmup; ++i) comms[r]->all_reduce_sum(buffer);
      if (devices[r].is_cuda()) torch::cuda::synchronize(devices[r].index());
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < kTimed; ++i) comms[r]->all_reduce_sum(buffer);
      if (devices[r].is_cuda()) torch::cuda::synchronize(devices[r].index());
      const std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - start;
      if (r == 0) ms = took.count() / kTimed;
    } catch (...) {
      comms[r]->abort("all-reduce timing failed on another rank");
      throw;
    }
  });
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return ms;
}

// The communicators a configuration trains with, also for one replica (where training needs
// none): NCCL between GPUs unless --comm local, else the in-process group.
std::vector<std::unique_ptr<Communicator>> bench_group(const TrainConfig& config,
                                                      const std::vector<torch::Device>& devices) {
  if (devices[0].is_cuda() && config.comm != "local") {
    return make_nccl_group(devices, config.comm_timeout_s);
  }
  return behind_link_from_env(make_local_group(
      static_cast<int>(devices.size()),
      std::chrono::milliseconds(static_cast<int64_t>(config.comm_timeout_s * 1000))));
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}


// Whether the configuration's replicas reduce gradients: several, or one GPU with --comm nccl
// (a one-rank NCCL group, which times the communicator's own cost).
bool reduces(const TrainConfig& train, const std::vector<torch::Device>& devices) {
  return devices.size() > 1 || (devices[0].is_cuda() && train.comm == "nccl");
}

// trace: where to write a profiler trace of the timed steps (Chrome's JSON), or empty.
Timing time_steps(const TrainConfig& train, const std::vector<torch::Device>& devices,
                  const data::Dataset& images, const torch::Tensor& mean, const BenchConfig& config,
                  const fs::path& trace) {
  torch::manual_seed(config.train.seed);
  auto net = models::make_model(train.model, models::ModelShape{});
  std::vector<std::unique_ptr<Communicator>> comms;
  if (reduces(train, devices) && devices[0].is_cuda() && train.comm != "local") {
    comms = make_nccl_group(devices, train.comm_timeout_s);
  }
  Trainer trainer(train, net, devices, mean, std::move(comms));
  trainer.train_steps(images, warmup_steps(train, config.warmup));
  for (const auto& d : devices) {
    if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.index());
  }
  namespace profiler = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const profiler::ProfilerConfig kineto(torch::profiler::impl::ProfilerState::KINETO);
  std::set<ActivityType> activities{ActivityType::CPU};
  if (devices[0].is_cuda()) activities.insert(ActivityType::CUDA);
  if (!trace.empty()) {
    profiler::prepareProfiler(kineto, activities);
    profiler::enableProfiler(kineto, activities);
  }
  const auto start = std::chrono::steady_clock::now();
  trainer.train_steps(images, config.steps);
  Timing t;
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!trace.empty()) profiler::disableProfiler()->save(trace.string());
  t.steps = trainer.step_times();
  t.global_batch = trainer.global_batch();
  t.gradient_floats = models::count_parameters(*net.ptr());
  if (devices[0].is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(devices[0].index());
    t.peak_memory_mib = static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0);
  }
  return t;
}

// The last timed step's communication, per mode: when each bucket was started, its bytes, when
// the backward pass returned and when every bucket had been waited for (ms since it began).
std::string timeline_csv(const std::vector<std::pair<std::string, StepTimeline>>& modes) {
  std::string csv = "mode,bucket,bytes,started_ms,backward_end_ms,finished_ms\n";
  for (const auto& [mode, t] : modes) {
    for (size_t b = 0; b < t.started.size(); ++b) {
      csv += fmt::format("{},{},{},{:.3f},{:.3f},{:.3f}\n", mode, b, t.bytes[b], t.started[b],
                         t.backward_end, t.finished);
    }
  }
  return csv;
}

// One step's timeline for the chart: the backward pass and, on the simulated link, each
// bucket's all-reduce (from when replica 0 started it, once the link is free, for as long as the
// link takes: SimulatedLink's rule when the replicas start it together), in the overlapped step
// and in the --no-overlap step.
std::vector<Span> timeline_spans(const StepTimeline& t, const LinkSpeed& link,
                                 const std::string& name) {
  std::vector<Span> spans{{"backward " + name, 0, t.backward_end, "backward"}};
  double free_at = 0;
  for (size_t b = 0; b < t.started.size(); ++b) {
    const double start = std::max(t.started[b], free_at);
    free_at = start + 1000 * link.seconds(static_cast<double>(t.bytes[b]));
    spans.push_back({"all-reduce " + name, start, free_at,
                     fmt::format("b{}:{:.1f}MB", b, 1e-6 * static_cast<double>(t.bytes[b]))});
  }
  spans.push_back({"optimizer " + name, t.finished, t.finished + 0.01 * t.finished, "step"});
  return spans;
}

}  // namespace mgpu::app
