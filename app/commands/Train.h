// mgpu train (run_training): one whole training run, from data files to the run directory's outputs.
#pragma once

#include <filesystem>
#include <ostream>

#include "train/report/History.h"
#include "train/TrainConfig.h"

namespace mgpu::app {

struct RunResult {
  train::History history;
  std::filesystem::path out_dir;
  double seconds = 0;            // wall time of the whole run, every part (Trainer::run_seconds)
  double seconds_this_part = 0;  // of this process's part alone
};

/// Loads the data, trains config.model on the device --gpus selects, and leaves in the run
/// directory history.csv (after every epoch), summary.json, model.pt (a weights file,
/// train/files/Weights.h), mean.pt, checkpoints/ and the plot.
/// Throws data::InputError for bad input, std::runtime_error for failures while running.
RunResult run_training(const train::TrainConfig& config, std::ostream& out);

}  // namespace mgpu::app
