// The command line: `mgpu train`, `mgpu plot`, help. The only file that knows cxxopts.
#pragma once

#include <string>
#include <vector>

#include "train/Bench.h"
#include "train/TrainConfig.h"

namespace mgpu::app {

struct Command {
  enum class Kind { kHelp, kTrain, kPlot, kBench };
  Kind kind = Kind::kHelp;
  std::string help;             // kHelp: the text to print
  train::TrainConfig train;     // kTrain
  std::string plot_csv;         // kPlot: history.csv to read
  std::string plot_output;      // kPlot: PNG to write
  train::BenchConfig bench;     // kBench
};

/// Parses argv (argv[0] is the program). Throws data::InputError with a message that names
/// the flag for unknown commands, unknown flags, wrong types and out-of-range values.
Command parse_command_line(const std::vector<std::string>& args);

}  // namespace mgpu::app
