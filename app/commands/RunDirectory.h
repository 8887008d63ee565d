// What a run is, apart from training it: its directory and the checkpoint it continues from,
// the fingerprint a checkpoint must match, and run.json's and summary.json's contents.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

#include "app/commands/Train.h"        // defines: RunResult
#include "data/Datasets.h"             // defines: DataSplit
#include "train/TrainConfig.h"
#include "train/Trainer.h"             // defines: Trainer, Resumed
#include "train/files/AtomicFile.h"    // defines: NewDirectories
#include "train/report/Progress.h"     // defines: Progress
#include "train/report/TensorBoard.h"  // defines: LogPosition

namespace mgpu::app {

/// Where a run's files go, and what this process continues from.
struct RunDirectory {
  std::filesystem::path out_dir;      // --out-dir, or a new runs/<dataset>-<time>
  std::filesystem::path plot;         // --output, or out_dir/plot.png
  std::filesystem::path checkpoints;  // out_dir/checkpoints
  std::optional<std::filesystem::path> resume_from;  // --resume's checkpoint, if this process has it
};

/// Rank 0 (lead) creates the directories (in created, which removes them if the run fails
/// before writing a file) and checks the plot's path; every process finds the checkpoint
/// --resume names. Throws data::InputError for a --resume file missing in a one-process run.
RunDirectory open_run_directory(const train::TrainConfig& config, const std::string& dataset,
                                bool lead, int64_t world_size, train::NewDirectories& created,
                                train::Progress& progress);

/// Before anything trains, with every process: the newest checkpoint any rank resumes from goes
/// to the ranks without it (Trainer::share_checkpoint), and a run that cannot start is refused
/// by every rank: --resume FILE that no process has, or a fresh run in a folder holding an
/// earlier run's checkpoints. Returns the checkpoint this process resumes from.
std::optional<std::filesystem::path> agree_on_checkpoint(train::Trainer& trainer,
                                                         const train::TrainConfig& config,
                                                         const RunDirectory& run, bool lead,
                                                         train::Progress& progress);

/// What a checkpoint must match to continue this run.
nlohmann::json run_fingerprint(const train::TrainConfig& config, const data::DataSplit& data,
                               const train::Trainer& trainer);

/// run.json: model, data, device, processes, threads and the settings (also summary.json's head
/// and TensorBoard's text).
nlohmann::json run_json(const train::TrainConfig& config, const data::DataSplit& data,
                        const std::string& device, int64_t threads, int64_t parameters,
                        const train::Trainer& trainer, int64_t processes);

/// summary.json: run.json's and how the run went.
nlohmann::json summary_json(const train::TrainConfig& config, const data::DataSplit& data,
                            nlohmann::json run, const train::Trainer& trainer,
                            const RunResult& result);

/// Where the logs of a resumed run continue: the checkpoint's epochs and global steps.
std::optional<train::LogPosition> log_position(const std::optional<train::Resumed>& resumed,
                                               const data::DataSplit& data,
                                               const train::Trainer& trainer);

}  // namespace mgpu::app
