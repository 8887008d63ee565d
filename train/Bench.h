// mgpu bench: steady-state step times for several replica counts, side by side.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "train/TrainConfig.h"

namespace mgpu::train {

struct BenchConfig {
  TrainConfig train;               // batch, threads, seed, lr, comm (epochs and data unused)
  bool gpus = false;               // replicas are GPUs (else CPU replicas)
  std::vector<int64_t> replicas;   // e.g. {1, 2, 4}
  int64_t steps = 20;              // timed steps per configuration
  int64_t warmup = 3;              // untimed steps first
  std::string out_dir;             // bench.csv and bench.png; empty: runs/bench-<time>
};

struct BenchRow {
  int64_t replicas = 0, global_batch = 0;
  double ms_per_step = 0, images_per_second = 0;
  double seconds_per_epoch = 0;  // projected for CIFAR-10's 50,000 training images
  double speedup = 0;            // images/s over the first row's
  double efficiency = 0;         // speedup over the replica ratio
  int64_t gradient_floats = 0;   // size of the flat gradient buffer
  double all_reduce_ms = 0;      // one all-reduce of that buffer, timed on its own
};

/// Times each configuration on the same synthetic CIFAR-sized data (config.train.model,
/// MiniGoogLeNet by default, the tutorial's recipe), prints a table, writes bench.csv and a chart. Throws data::InputError
/// before running anything if a configuration needs more GPUs than are visible.
std::vector<BenchRow> run_bench(const BenchConfig& config, std::ostream& out);

}  // namespace mgpu::train
