// mgpu plot: the tutorial's loss/accuracy figure redrawn from a run's history.csv.
#pragma once

#include <filesystem>

namespace mgpu::app {

struct PlotConfig {
  std::filesystem::path history;  // a history.csv written by mgpu train
  std::filesystem::path output;   // the PNG to write
};

/// Redraws the plot of history into output (written atomically). Throws data::InputError for
/// a missing or malformed history file, std::runtime_error when gnuplot is unavailable.
void plot_from_csv(const std::filesystem::path& csv, const std::filesystem::path& png);

}  // namespace mgpu::app
