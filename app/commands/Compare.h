// mgpu compare: runs side by side, as the tutorial compares one GPU with four: devices,
// replicas, batch, how the recipes differ, seconds per epoch, accuracy, speedup.
#pragma once

#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/report/History.h"  // defines: History

namespace mgpu::app {

struct CompareConfig {
  std::vector<std::filesystem::path> runs;  // run directories written by mgpu train
  std::filesystem::path out_dir = ".";      // where compare.csv and compare.png go
};

/// One run as compare reads it: run.json or summary.json, and history.csv.
struct RunRecord {
  std::filesystem::path dir;
  nlohmann::json info;    // summary.json if the run finished, else run.json (may be empty)
  bool finished = false;  // it has a summary.json
  train::History history;
  double median_epoch_seconds = 0;
  double wall_seconds = 0;  // summary's over all parts, else the epochs' so far
};

/// Reads a run directory; throws data::InputError naming it if it is not one.
RunRecord read_run(const std::filesystem::path& dir);

/// Prints the table and notes, writes compare.csv and (if gnuplot can) compare.png.
void compare_runs(const CompareConfig& config, std::ostream& out);

}  // namespace mgpu::app
