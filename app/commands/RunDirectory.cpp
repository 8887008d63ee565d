// A run's directory, the checkpoint it continues from, and the JSON that describes it.
#include "app/commands/RunDirectory.h"

#include <fmt/core.h>

#include <cmath>
#include <ctime>

#include "app/commands/RecipeFlags.h"  // defines: recipe_summary, recipe_fingerprint
#include "data/InputError.h"           // defines: InputError
#include "train/LrSchedule.h"          // defines: run_steps
#include "train/files/Checkpoint.h"    // defines: latest_checkpoint

namespace mgpu::app {

using namespace mgpu::train;
namespace fs = std::filesystem;

namespace {

// --epochs in JSON: a whole number as an integer (as before fractional epochs, so that older
// checkpoints keep their fingerprint), else the fraction.
nlohmann::json epochs_json(double epochs) {
  if (epochs == std::floor(epochs)) return static_cast<int64_t>(epochs);
  return epochs;
}

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", std::localtime(&now));
  return text;
}

}  // namespace

RunDirectory open_run_directory(const TrainConfig& config, const std::string& dataset, bool lead,
                                int64_t world_size, NewDirectories& created, Progress& progress) {
  RunDirectory run;
  run.out_dir = config.out_dir.empty() ? fs::path("runs") / fmt::format("{}-{}", dataset, timestamp())
                                       : fs::path(config.out_dir);
  if (lead && config.out_dir.empty()) {
    run.out_dir = created.prepare_new(run.out_dir, "--out-dir");
  } else if (lead) {
    created.prepare(run.out_dir, "--out-dir");
  }
  run.plot = config.plot_path.empty() ? run.out_dir / "plot.png" : fs::path(config.plot_path);
  if (lead) check_output_file(run.plot, "--output", "plot.png");
  if (lead && run.plot.has_parent_path()) created.prepare(run.plot.parent_path(), "--output");
  // The checkpoint to resume from, if any (its checks come with Trainer::resume).
  run.checkpoints = run.out_dir / "checkpoints";
  if (config.resume == "auto") {
    run.resume_from = latest_checkpoint(run.checkpoints);
    if (!run.resume_from) {
      progress.info(fmt::format("no checkpoint in {}: starting afresh", run.checkpoints.string()));
    }
  } else if (!config.resume.empty()) {
    if (fs::is_regular_file(config.resume)) {
      run.resume_from = fs::path(config.resume);
    } else if (world_size == 1) {
      throw data::InputError(fmt::format("--resume {}: no such checkpoint file", config.resume));
    }  // a process without the file gets another's copy (agree_on_checkpoint)
  }
  return run;
}

std::optional<fs::path> agree_on_checkpoint(Trainer& trainer, const TrainConfig& config,
                                            const RunDirectory& run, bool lead,
                                            Progress& progress) {
  // Nodes that share no folder: the ranks without rank 0's checkpoint get a copy of it. Every
  // process of the job calls it (a collective), before any other.
  std::string sent;
  const auto from = trainer.share_checkpoint(run.resume_from, run.checkpoints, &sent);
  if (!sent.empty()) progress.info("checkpoint " + sent);
  if (!from && !config.resume.empty() && config.resume != "auto") {  // no process had it
    trainer.agree_on_start(fmt::format("--resume {}: no such checkpoint file", config.resume));
  }
  if (!from && config.resume.empty() && lead) {
    if (const auto old = latest_checkpoint(run.checkpoints)) {  // a fresh run would mix with it
      trainer.agree_on_start(fmt::format(
          "--out-dir {} holds the checkpoints of an earlier run ({}): continue that run with "
          "--resume auto, or give another --out-dir (or delete {} to start afresh there)",
          run.out_dir.string(), old->filename().string(), run.checkpoints.string()));
    }
  }
  return from;
}

// What the run is: run.json, the head of summary.json, and the settings TensorBoard shows.
nlohmann::json run_json(const TrainConfig& config, const data::DataSplit& data,
                        const std::string& device, int64_t threads, int64_t parameters,
                        const Trainer& trainer, int64_t processes) {
  nlohmann::json j;
  j["model"] = config.model;
  j["parameters"] = parameters;
  j["dataset"] = data.name;
  j["data_source"] = data.source;
  j["train_images"] = data.train.size();
  j["test_images"] = data.test.size();
  j["image_shape"] = data.train.images.sizes().slice(1).vec();
  j["device"] = device;
  j["processes"] = processes;
  j["threads"] = threads;
  j["config"] = {{"epochs", epochs_json(config.epochs)},
                 {"lr", config.lr},
                 {"power", config.power},
                 {"momentum", config.momentum},
                 {"batch_per_device", config.batch_per_device},
                 {"accumulate", config.accumulate},
                 {"lr_scaling", config.lr_scaling},
                 {"warmup_epochs", config.warmup_epochs},
                 {"replicas", trainer.world_size()},
                 {"global_batch", trainer.global_batch()},
                 {"gpus", config.gpus},
                 {"seed", config.seed},
                 {"deterministic", config.deterministic},
                 {"amp", config.amp},
                 {"channels_last", config.channels_last},
                 {"fused_sgd", config.fused_sgd || config.cuda_graphs},
                 {"cuda_graphs", config.cuda_graphs},
                 {"cudnn_benchmark", config.cudnn_benchmark && !config.deterministic},
                 {"tf32", config.tf32},
                 {"comm_dtype", config.comm_dtype}};
  j["config"].update(recipe_summary(config));
  return j;
}

// run.json's and how the run went.
nlohmann::json summary_json(const TrainConfig& config, const data::DataSplit& data,
                            nlohmann::json j, const Trainer& trainer, const RunResult& result) {
  const History& history = result.history;
  if (config.amp == "fp16") j["loss_scale"] = trainer.loss_scale();  // at the end
  j["lr_changes"] = nlohmann::json::array();
  for (const auto& c : trainer.lr_changes()) {
    j["lr_changes"].push_back(
        {{"epoch", c.epoch + 1}, {"after_step", c.step}, {"from", c.from}, {"to", c.to}});
  }
  // In epochs of steps: 1.3 for --epochs 1.3 (whose history has a row for each of the 2
  // epochs begun).
  const int64_t per_epoch = data.train.size() / trainer.global_batch();
  j["epochs_completed"] = epochs_json(static_cast<double>(run_steps(per_epoch, config.epochs)) /
                                      static_cast<double>(per_epoch));
  j["seconds"] = result.seconds;  // all parts of a resumed run, each up to its last checkpoint
  j["seconds_this_part"] = result.seconds_this_part;
  j["train_images_per_second"] = trainer.images_per_second();
  if (!history.empty()) {
    const auto& last = history.back();
    j["final"] = {{"loss", last.loss},
                  {"acc", last.acc},
                  {"val_loss", last.val_loss},
                  {"val_acc", last.val_acc}};
    double epoch_seconds = 0;
    for (const auto& e : history) epoch_seconds += e.seconds;
    j["seconds_per_epoch"] = epoch_seconds / static_cast<double>(history.size());
  }
  return j;
}

std::optional<LogPosition> log_position(const std::optional<Resumed>& resumed,
                                        const data::DataSplit& data, const Trainer& trainer) {
  if (!resumed) return std::nullopt;
  const int64_t per_epoch = data.train.size() / trainer.global_batch();
  return LogPosition{resumed->epoch, resumed->epoch * per_epoch + resumed->step};
}

// What a checkpoint must match to continue this run: the model, the data, and everything that
// shapes the trajectory, except the learning rate, which a resume may lower (Trainer::resume).
nlohmann::json run_fingerprint(const TrainConfig& config, const data::DataSplit& data,
                               const Trainer& trainer) {
  nlohmann::json j = {{"model", config.model},
          {"dataset", data.name},
          {"train_images", data.train.size()},
          {"test_images", data.test.size()},
          {"image_shape", data.train.images.sizes().slice(1).vec()},
          {"classes", data.class_names.size()},
          {"replicas", trainer.world_size()},
          {"batch_per_device", config.batch_per_device},
          {"accumulate", config.accumulate},
          {"epochs", epochs_json(config.epochs)},
          {"power", config.power},
          {"momentum", config.momentum},
          {"lr_scaling", config.lr_scaling},
          {"warmup_epochs", config.warmup_epochs},
          {"amp", config.amp},
          {"optimizer", config.fused_sgd || config.cuda_graphs ? "fused-sgd" : "sgd"},
          {"seed", config.seed}};
  j.update(recipe_fingerprint(config));
  // Recorded only when not float32, so that checkpoints written before the flag still match.
  if (config.comm_dtype != "float32") j["comm_dtype"] = config.comm_dtype;
  return j;
}

}  // namespace mgpu::app
