// The run directory's logs while training: run.json, history.csv, TensorBoard.
#include "app/commands/RunLogs.h"

#include <fmt/core.h>

#include <utility>

#include "train/files/AtomicFile.h"  // defines: write_text_atomically

namespace mgpu::app {

using namespace mgpu::train;
namespace fs = std::filesystem;

RunLogs::RunLogs(fs::path out_dir, nlohmann::json run, bool writer, bool tensorboard,
                 std::optional<LogPosition> resumed)
    : out_dir_(std::move(out_dir)),
      run_(std::move(run)),
      writer_(writer),
      tensorboard_(tensorboard),
      resumed_(resumed) {}

void RunLogs::open() {
  if (opened_ || !writer_) return;
  opened_ = true;
  // summary.json is a finished run's: one left by an earlier run in this folder goes.
  std::error_code ec;
  fs::remove(out_dir_ / "summary.json", ec);
  write_text_atomically(out_dir_ / "run.json", run_.dump(2) + "\n");
  if (!tensorboard_) return;
  board_.emplace(out_dir_ / "tensorboard", resumed_);
  board_->text("config", settings_markdown(run_), resumed_ ? resumed_->steps : 0);
}

void RunLogs::step(const StepLog& log) {
  open();
  if (board_) board_->step(log.step, log.loss, log.lr, log.loss_scale);
}

void RunLogs::epoch(const History& history, double images_per_second) {
  if (!writer_) return;
  open();
  write_text_atomically(out_dir_ / "history.csv", history_csv(history));
  if (board_) board_->epoch(history.back(), images_per_second);
}

std::string settings_markdown(const nlohmann::json& run) {
  std::string md = "| setting | value |\n|---|---|\n";
  for (const auto& [key, value] : run.items()) {
    if (key == "config") continue;
    md += fmt::format("| {} | {} |\n", key, value.dump());
  }
  const nlohmann::json config = run.value("config", nlohmann::json::object());
  for (const auto& [key, value] : config.items()) {
    md += fmt::format("| config.{} | {} |\n", key, value.dump());
  }
  return md;
}

}  // namespace mgpu::app
