// run_training: one whole training run, from data files to the run directory's outputs.
#pragma once

#include <filesystem>
#include <ostream>

#include "train/History.h"
#include "train/TrainConfig.h"

namespace mgpu::train {

struct RunResult {
  History history;
  std::filesystem::path out_dir;
  double seconds = 0;
};

/// Loads the data, trains config.model on the device --gpus selects, and leaves in the run
/// directory history.csv (after every epoch), summary.json, model.pt (a weights file,
/// train/Weights.h), mean.pt, checkpoints/ and the plot.
/// Throws data::InputError for bad input, std::runtime_error for failures while running.
RunResult run_training(const TrainConfig& config, std::ostream& out);

/// Redraws a plot from a history.csv.
void plot_from_csv(const std::filesystem::path& csv, const std::filesystem::path& png);

}  // namespace mgpu::train
