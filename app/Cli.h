// The command line: `mgpu train`, `plot`, `bench`, `models`, `evaluate`, `predict`, `export`,
// help. Cli.cpp is the only file that knows cxxopts.
#pragma once

#include <string>
#include <vector>

#include "train/Bench.h"
#include "train/Evaluate.h"
#include "train/Predict.h"
#include "train/TrainConfig.h"

namespace mgpu::app {

struct Command {
  enum class Kind { kHelp, kTrain, kPlot, kBench, kModels, kEvaluate, kPredict, kExport };
  Kind kind = Kind::kHelp;
  std::string help;             // kHelp: the text to print
  train::TrainConfig train;     // kTrain
  std::string plot_csv;         // kPlot: history.csv to read
  std::string plot_output;      // kPlot: PNG to write
  train::BenchConfig bench;     // kBench
  train::EvaluateConfig evaluate;  // kEvaluate
  train::PredictConfig predict;    // kPredict
  std::string export_weights;      // kExport: weights file or run directory
  std::string export_to;           // kExport: the state_dict file to write
};

/// Parses argv (argv[0] is the program). Throws data::InputError with a message that names
/// the flag for unknown commands, unknown flags, wrong types and out-of-range values.
Command parse_command_line(const std::vector<std::string>& args);

}  // namespace mgpu::app
