// What mgpu bench measures, one configuration at a time: its training steps on a fresh model
// (with a profiler trace if asked), the all-reduce of its gradients alone, and the timeline of
// one step's communication.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "app/commands/Bench.h"         // defines: BenchConfig
#include "data/Dataset.h"               // defines: Dataset
#include "train/Trainer.h"              // defines: Trainer::StepTimes
#include "train/comm/Communicator.h"    // defines: Communicator
#include "train/comm/SimulatedLink.h"   // defines: LinkSpeed
#include "train/report/Plot.h"          // defines: Span

namespace mgpu::app {

/// One configuration's timed steps, after its warm-up, on a fresh model.
struct Timing {
  double seconds = 0;
  train::Trainer::StepTimes steps;  // replica 0's, per timed step
  int64_t global_batch = 0, gradient_floats = 0;
  double peak_memory_mib = -1;
};

/// Trains config.warmup (warmup_steps) then config.steps steps of train on devices, from a fresh
/// model seeded with config.train.seed; trace: where to write a profiler trace of the timed
/// steps (Chrome's JSON), or empty.
Timing time_steps(const train::TrainConfig& train, const std::vector<torch::Device>& devices,
                  const data::Dataset& images, const torch::Tensor& mean, const BenchConfig& config,
                  const std::filesystem::path& trace = {});

/// Whether the configuration's replicas reduce gradients: several, or one GPU with --comm nccl
/// (a one-rank NCCL group, which times the communicator's own cost).
bool reduces(const train::TrainConfig& train, const std::vector<torch::Device>& devices);

/// The communicators a configuration trains with, also for one replica (where training needs
/// none): NCCL between GPUs unless --comm local, else the in-process group.
std::vector<std::unique_ptr<train::Communicator>> bench_group(
    const train::TrainConfig& config, const std::vector<torch::Device>& devices);

/// Milliseconds per sum all-reduce of a `numel`-float buffer (the model's flat gradient buffer),
/// every rank on a thread of its own as in training, after a few untimed calls; rank 0's mean.
double time_all_reduce(std::vector<std::unique_ptr<train::Communicator>> comms,
                       const std::vector<torch::Device>& devices, int64_t numel);

double median(std::vector<double> values);

/// The last timed step's communication, per mode: when each bucket was started, its bytes, when
/// the backward pass returned and when every bucket had been waited for (ms since it began).
std::string timeline_csv(const std::vector<std::pair<std::string, train::StepTimeline>>& modes);

/// One step's timeline for the chart: the backward pass and, on the simulated link, each
/// bucket's all-reduce (from when replica 0 started it, once the link is free, for as long as
/// the link takes), in the overlapped step and in the --no-overlap step.
std::vector<train::Span> timeline_spans(const train::StepTimeline& t, const train::LinkSpeed& link,
                                        const std::string& name);

}  // namespace mgpu::app
