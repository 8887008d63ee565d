// What rank 0 leaves in a run directory while it trains: run.json (what the run is: model,
// data, devices, processes, settings), history.csv after each epoch, and the TensorBoard log.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>

#include "train/Trainer.h"              // defines: StepLog
#include "train/report/History.h"       // defines: History
#include "train/report/TensorBoard.h"  // defines: TensorBoardLog, LogPosition

namespace mgpu::app {

class RunLogs {
 public:
  /// writer: whether this process writes (rank 0); tensorboard: --no-tensorboard not given;
  /// resumed: the checkpoint's position when the run continues one. Nothing is written before
  /// the first epoch's end or logged step, which come after every process agreed to start: a
  /// run refused at its start overwrites nothing of an earlier run in the same folder.
  RunLogs(std::filesystem::path out_dir, nlohmann::json run, bool writer, bool tensorboard,
          std::optional<train::LogPosition> resumed);
  void step(const train::StepLog& log);
  void epoch(const train::History& history, double images_per_second);

 private:
  void open();  // run.json and the TensorBoard log, once

  std::filesystem::path out_dir_;
  nlohmann::json run_;
  bool writer_, tensorboard_;
  std::optional<train::LogPosition> resumed_;
  bool opened_ = false;
  std::optional<train::TensorBoardLog> board_;
};

/// run.json's settings as a markdown table (TensorBoard's text plugin shows it): one row per
/// key, config.* flattened.
std::string settings_markdown(const nlohmann::json& run);

}  // namespace mgpu::app
