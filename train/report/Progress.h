// Keras-style console output: a live progress bar (verbose 1), one line per epoch (verbose 2),
// or nothing (verbose 0).
#pragma once

#include <chrono>
#include <iostream>
#include <ostream>
#include <string>

#include "train/report/History.h"

namespace mgpu::train {

class Progress {
 public:
  Progress(int verbose, std::ostream& out, std::ostream& err = std::cerr);

  /// A line of run information (device, sizes, totals); shown unless verbose is 0.
  void info(const std::string& line);
  /// A warning, on the error stream, shown at every verbosity.
  void warn(const std::string& line);

  void epoch_begin(int64_t epoch, int64_t epochs, int64_t steps);
  /// Whether the bar wants fresh figures after this step: at most ten redraws a second, so
  /// the trainer reads device metrics back at a bounded rate, and always after the last step.
  bool due(int64_t step);
  void update(int64_t step, double loss, double acc);
  /// After the epoch's last step, at verbose 1: the bar's line says the test set is being
  /// evaluated (where Keras's bar sits silent) until epoch_end replaces it.
  void evaluating(int64_t images);
  void epoch_end(const EpochStats& stats);

 private:
  using Clock = std::chrono::steady_clock;
  std::string bar(int64_t step) const;

  int verbose_;
  std::ostream& out_;
  std::ostream& err_;
  int64_t epoch_ = 0, epochs_ = 0, steps_ = 0;
  Clock::time_point epoch_start_, last_draw_;
  std::string line_;  // the bar's line as last drawn, which epoch_end overwrites
};

}  // namespace mgpu::train
