// mgpu bench: steady-state step times for several replica counts, side by side.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "train/TrainConfig.h"

namespace mgpu::app {

/// The optimisation levels of `mgpu bench --levels`, in order; each adds one switch to the
/// level before it (TrainConfig's speed fields).
const std::vector<std::string>& all_bench_levels();
/// "all" (without GPUs: all but cuda-graphs) or a comma-separated choice of all_bench_levels(),
/// in ladder order. Throws data::InputError naming an unknown level, or cuda-graphs without GPUs.
std::vector<std::string> bench_levels(const std::string& text, bool gpus);
/// config with the switches of `level` and of every level below it, the others off.
train::TrainConfig at_level(train::TrainConfig config, const std::string& level);

/// The untimed steps the bench runs before timing train, given --warmup `asked`: with CUDA
/// graphs at least the eager steps before the capture, the capture (with its first replay) and
/// one more replay, so that no timed step captures or instantiates the graph.
int64_t warmup_steps(const train::TrainConfig& train, int64_t asked);

struct BenchConfig {
  train::TrainConfig train;               // batch, threads, seed, lr, comm, speed switches
  bool gpus = false;               // replicas are GPUs (else CPU replicas)
  std::vector<int64_t> replicas;   // e.g. {1, 2, 4}
  int64_t steps = 20;              // timed steps per configuration
  int64_t warmup = 3;              // untimed steps first (more with CUDA graphs: warmup_steps)
  std::vector<std::string> levels; // empty: train's speed switches as given
  std::string out_dir;             // bench.csv and bench.png; empty: runs/bench-<time>
  bool trace = false;              // a profiler trace of the first configuration: trace.json
};

struct BenchRow {
  std::string level;  // empty without --levels
  int64_t replicas = 0, global_batch = 0;
  double ms_per_step = 0, images_per_second = 0;
  double seconds_per_epoch = 0;  // projected for CIFAR-10's 50,000 training images
  double speedup = 0;            // images/s over the first row's
  double efficiency = 0;         // speedup over the replica ratio
  int64_t gradient_floats = 0;   // size of the flat gradient buffer
  double all_reduce_ms = 0;      // one all-reduce of that buffer, timed on its own
  double tflops = 0;             // achieved: training FLOPs (3x the forward's) per second
  double peak_memory_mib = -1;   // peak GPU memory allocated while timing; -1 on the CPU
  // Replica 0's medians over the timed steps (host clock: on a GPU, what the host waited for);
  // backward_ms is -1 for CUDA-graph rows, whose replays run no backward pass on the host.
  double median_step_ms = 0, backward_ms = 0;
  // With several replicas and overlap on: the median step with --no-overlap, and the share of
  // the all-reduce time the overlap hid ((no_overlap_ms - median_step_ms) / all_reduce_ms).
  double no_overlap_ms = 0, hidden = 0;
};

/// Times each configuration (every replica count, at every level if levels are given) on the
/// same synthetic CIFAR-sized data (config.train.model, MiniGoogLeNet by default, the
/// tutorial's recipe) in this process, prints a table, writes bench.csv and a chart. Throws
/// data::InputError before running anything if a configuration needs more GPUs than are
/// visible.
std::vector<BenchRow> run_bench(const BenchConfig& config, std::ostream& out);

}  // namespace mgpu::app
