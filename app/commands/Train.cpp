// mgpu train: run_training, the steps of one run from data files to the run directory's
// outputs; the flags are TrainFlags.cpp's, what a run is (its directory, fingerprint, JSON)
// RunDirectory.cpp's.
#include "app/commands/Train.h"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>

#include "app/commands/Command.h"       // defines: CommandSpec, make_command
#include "app/commands/RunDirectory.h"  // defines: open_run_directory, agree_on_checkpoint, ...
#include "app/commands/RunLogs.h"       // defines: RunLogs
#include "app/commands/TrainFlags.h"    // defines: train_options, parse_train, with_recipe
#include "data/Datasets.h"              // defines: load_data
#include "data/InputError.h"            // defines: InputError
#include "data/Preprocess.h"            // defines: mean_image, subtract_mean
#include "models/Registry.h"            // defines: make_model, find_model
#include "train/Device.h"               // defines: select_devices, configure_kernels, set_threads
#include "train/LrSchedule.h"           // defines: run_steps
#include "train/Signals.h"              // defines: install_stop_handlers, StopRequested
#include "train/Trainer.h"              // defines: Trainer
#include "train/comm/Groups.h"          // defines: make_communicators
#include "train/comm/Launcher.h"        // defines: read_launcher_env
#include "train/comm/StoreGroup.h"      // defines: AssemblyStopped
#include "train/files/AtomicFile.h"     // defines: write_text_atomically, NewDirectories
#include "train/files/Pickle.h"         // defines: write_pickle
#include "train/files/Weights.h"        // defines: save_weights
#include "train/report/Plot.h"          // defines: can_plot, plot_history
#include "train/report/Progress.h"      // defines: Progress

namespace mgpu::app {

using namespace mgpu::train;  // a command is built from the training library's parts
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// This process's devices: --gpus and --cpu-replicas, or under a launcher with --gpus 1 the GPU
// of its local rank.
std::vector<torch::Device> process_devices(const TrainConfig& config, const ProcessInfo& process) {
  if (process.world_size > 1 && config.gpus == 1) {
    return {torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(process.local_rank))};
  }
  return select_devices(config.gpus, config.cpu_replicas);
}

// The data set, refused at once if the model cannot take its images.
data::DataSplit load_run_data(const TrainConfig& config) {
  data::DataConfig data_config = config.data;
  data_config.check_shape = [&](int64_t channels, int64_t height, int64_t width, int64_t classes) {
    models::make_model(config.model, {channels, height, width, classes});  // throws if it cannot
  };
  return data::load_data(data_config);
}

// The model before training: its shape, parameters, and the training set's mean image.
struct RunModel {
  torch::nn::AnyModule net;
  models::ModelShape shape;
  int64_t parameters = 0;
  torch::Tensor mean;  // [C, H, W], pixel units
};

// A fresh run initialises the weights (and a model's data-dependent initialisation); a resumed
// one gets them from the checkpoint.
RunModel build_model(const TrainConfig& config, const data::DataSplit& data, bool fresh) {
  torch::manual_seed(config.seed);  // weight initialisation and dropout
  const auto& shape = data.train.images.sizes();  // [N, C, H, W]
  RunModel m;
  m.shape = {shape[1], shape[2], shape[3], static_cast<int64_t>(data.class_names.size())};
  m.net = models::make_model(config.model, m.shape);
  m.parameters = models::count_parameters(*m.net.ptr());
  m.mean = data::mean_image(data.train.images);
  const auto& entry = models::find_model(config.model);
  if (entry.init && fresh) {
    const int64_t n = std::min(models::kInitImages, data.train.size());
    entry.init(m.net, data::subtract_mean(data.train.images.narrow(0, 0, n), m.mean));
  }
  return m;
}

// The communicators of this process's replicas. A stop request (Slurm's SIGTERM, timeout's,
// a kill) while the job assembles ends the wait at once, as a requested stop: the checkpoint
// this part would have resumed from is still the one to continue from, if there is one.
std::vector<std::unique_ptr<Communicator>> assemble(const TrainConfig& config,
                                                    const ProcessInfo& process,
                                                    const std::vector<torch::Device>& devices,
                                                    const std::optional<fs::path>& checkpoint) {
  try {
    return make_communicators(config.comm, config.comm_timeout_s, process, devices,
                              [] { return stop_signal() != 0; });
  } catch (const AssemblyStopped& e) {
    throw StopRequested(fmt::format(
        "{}: stopped by {} before the first step; {}", e.what(), signal_name(stop_signal()),
        !checkpoint ? std::string("nothing was trained, so there is nothing to keep")
        : config.resume == "auto"
            ? fmt::format("continue from checkpoint {} with --resume auto and the same --out-dir",
                          checkpoint->string())
            : fmt::format("continue from checkpoint {} with the same --resume", checkpoint->string())));
  }
}

CheckpointPolicy checkpoint_policy(const TrainConfig& config, const data::DataSplit& data,
                                   const Trainer& trainer, const RunDirectory& run, bool lead,
                                   Clock::time_point start) {
  CheckpointPolicy checkpoints;
  checkpoints.dir = run.checkpoints;
  checkpoints.every_steps = config.checkpoint_every;
  checkpoints.keep = config.keep;
  checkpoints.writer = lead;
  checkpoints.fingerprint = run_fingerprint(config, data, trainer).dump();
  checkpoints.started = start;
  return checkpoints;
}

std::string describe_devices(const std::vector<torch::Device>& devices) {
  const std::string one = describe_device(devices[0]);
  return devices.size() > 1 ? fmt::format("{} x {}", devices.size(), one) : one;
}

// The lines before the first epoch: device, data, model, recipe, batch and rate.
void print_start(Progress& progress, const TrainConfig& config, const data::DataSplit& data,
                 const RunModel& model, const Trainer& trainer, const std::string& devices,
                 int64_t threads, const fs::path& out_dir) {
  const auto& entry = models::find_model(config.model);
  progress.info(fmt::format("device: {}, LibTorch threads: {}", devices, threads));
  progress.info(fmt::format("data: {} from {}: {} train, {} test images of {}x{}x{}, {} classes",
                            data.name, data.source, data.train.size(), data.test.size(),
                            model.shape.channels, model.shape.height, model.shape.width,
                            data.class_names.size()));
  progress.info(fmt::format("model: {} ({}), {} trainable parameters", config.model,
                            entry.description, model.parameters));
  if (!entry.recipe.empty()) {
    progress.info(fmt::format("recipe: {}'s, {} (mgpu models; flags given override it)",
                              config.model, fmt::join(entry.recipe, " ")));
  }
  const double lr_scale = trainer.schedule().scale;  // --lr-scaling linear's factor, else 1
  const std::string lr_text =
      config.lr_scaling == "linear"
          ? fmt::format("{} x {} = {} (--lr-scaling linear, warm-up {} epochs)", config.lr,
                        lr_scale, config.lr * lr_scale, config.warmup_epochs)
          : fmt::format("{}", config.lr);
  progress.info(fmt::format("training {} epochs, global batch {} ({} replica(s) x {} images x {} "
                            "micro-batch(es)), lr {} ({}), momentum {}; writing to {}",
                            config.epochs, trainer.global_batch(), trainer.world_size(),
                            config.batch_per_device, config.accumulate, lr_text,
                            config.schedule == "poly"
                                ? fmt::format("power {}", config.power)
                                : fmt::format("{} schedule", config.schedule),
                            config.momentum, out_dir.string()));
}

// What the settings imply that a user may not expect: the CPU's precision, --lookahead's end.
void print_notes(Progress& progress, const TrainConfig& config, const data::DataSplit& data,
                 const Trainer& trainer, const torch::Device& device) {
  if (config.amp == "off" && !device.is_cuda() && cpu_has_bf16()) {
    progress.info(
        "note: this CPU has bfloat16 instructions: --amp bf16 would train about twice as fast "
        "(measured by mgpu bench --levels on a 2-core Xeon with AMX: 2.2x for MiniGoogLeNet, "
        "1.9x for ResNet-20, docs/benchmarks.md); it computes the forward passes in bfloat16, "
        "so results differ from float32's beyond rounding");
  }
  if (config.amp == "fp16" && !device.is_cuda()) {
    progress.warn(
        "--amp fp16 on the CPU is far slower than float32 (LibTorch's CPU float16 convolutions: "
        "MiniGoogLeNet's step took 135 times as long on a 2-core Xeon, docs/benchmarks.md): "
        "float16 is for GPUs without bfloat16. On a CPU use --amp bf16, or leave --amp off");
  }
  if (config.lookahead > 0 && data.train.size() >= trainer.global_batch()) {
    const int64_t total = run_steps(data.train.size() / trainer.global_batch(), config.epochs);
    if (const int64_t after = total % config.lookahead; after > 0) {
      progress.info(fmt::format(
          "note: --lookahead {}: the run ends on the average as of step {}; its last {} step(s) "
          "are not in it (as in airbench)",
          config.lookahead, total - after, after));
    }
  }
}

// Restores the trainer from the checkpoint; a refusal is every process's.
std::optional<Resumed> resume(Trainer& trainer, const std::optional<fs::path>& from,
                              Progress& progress, int64_t threads, const torch::Device& device) {
  if (!from) return std::nullopt;
  Resumed resumed;
  try {
    resumed = trainer.resume(*from);
  } catch (const data::InputError& e) {
    trainer.agree_on_start(e.what());  // every process refuses, not only this one
    throw;                              // (agree_on_start threw already)
  }
  progress.info(fmt::format("resuming from {}", from->string()));
  if (const auto& lowered = resumed.lr_lowered) {
    progress.info(fmt::format(
        "learning rate lowered from --lr {} to {} from here on (recorded in summary.json)",
        lowered->from, lowered->to));
  }
  if (resumed.threads > 0 && resumed.threads != threads && !device.is_cuda()) {
    progress.warn(fmt::format(
        "the checkpoint was written with {} LibTorch threads, this part has {}: on the CPU "
        "the sums of a step split by thread, so the run goes on correctly but not bit for "
        "bit as it would have (--threads {} repeats it exactly)",
        resumed.threads, threads, resumed.threads));
  }
  return resumed;
}

// What rank 0 leaves after the last epoch: weights, mean image, summary, plot, the last lines.
void finish_run(RunResult& result, const TrainConfig& config, const data::DataSplit& data,
                const RunModel& model, Trainer& trainer, const nlohmann::json& run,
                const RunDirectory& dir, bool plotting, const std::string& devices,
                Progress& progress, Clock::time_point start) {
  // With how this run validated, which mgpu evaluate repeats.
  save_weights({config.model, model.shape, data.name, data.class_names, model.mean,
                trainer.model().clone(torch::kCPU),
                {config.tta, config.amp, config.channels_last}},
               result.out_dir / "model.pt");
  write_pickle(result.out_dir / "mean.pt", c10::IValue(model.mean.contiguous()));  // as export's
  result.seconds = trainer.run_seconds();
  result.seconds_this_part = std::chrono::duration<double>(Clock::now() - start).count();
  const auto summary = summary_json(config, data, run, trainer, result);
  write_text_atomically(result.out_dir / "summary.json", summary.dump(2) + "\n");
  if (plotting) {
    plot_history(result.history, dir.plot,
                 fmt::format("{}, {}, {}", data.name, config.model, devices));
    progress.info(fmt::format("plot: {}", dir.plot.string()));
  }
  progress.info(fmt::format("training throughput: {:.1f} images/s (training steps only)",
                            trainer.images_per_second()));
  const std::string parts =
      result.seconds > result.seconds_this_part + 0.05
          ? fmt::format(" over all parts, {:.1f}s in this one", result.seconds_this_part)
          : "";
  progress.info(fmt::format("total wall time: {:.1f}s ({:.1f} min){}; final val_acc {:.4f}",
                            result.seconds, result.seconds / 60, parts,
                            result.history.back().val_acc));
}

}  // namespace

RunResult run_training(const TrainConfig& config, std::ostream& out) {
  const auto start = Clock::now();
  // First of all: a stop requested while the data loads is honoured after the first step.
  install_stop_handlers();
  const ProcessInfo process = read_launcher_env();
  const bool lead = process.rank == 0;  // only rank 0 prints and writes files
  Progress progress(lead ? config.verbose : 0, out);
  const std::vector<torch::Device> devices = process_devices(config, process);
  const int64_t threads = set_threads(config.threads);
  configure_kernels(config);

  const data::DataSplit data = load_run_data(config);
  NewDirectories created;  // a run refused or failed before writing a file leaves none behind
  const RunDirectory dir =
      open_run_directory(config, data.name, lead, process.world_size, created, progress);
  std::string no_plot_reason;
  const bool plotting = lead && can_plot(&no_plot_reason);
  const RunModel model = build_model(config, data, !dir.resume_from);
  if (process.world_size > 1) {
    progress.info(fmt::format("processes: {} ({}), this is rank {} on {}:{}; waiting for all to "
                              "join (--comm-timeout {} s)",
                              process.world_size, process.launcher, process.rank,
                              process.master_addr, process.master_port, config.comm_timeout_s));
  }
  Trainer trainer(config, model.net, devices, model.mean,
                  assemble(config, process, devices, dir.resume_from));
  trainer.set_checkpoints(checkpoint_policy(config, data, trainer, dir, lead, start));
  const std::optional<fs::path> from = agree_on_checkpoint(trainer, config, dir, lead, progress);

  const std::string device_text = describe_devices(devices);
  print_start(progress, config, data, model, trainer, device_text, threads, dir.out_dir);
  if (lead && !plotting) progress.warn(fmt::format("no plot will be drawn: {}", no_plot_reason));
  print_notes(progress, config, data, trainer, devices[0]);
  const std::optional<Resumed> resumed = resume(trainer, from, progress, threads, devices[0]);

  const nlohmann::json run =
      run_json(config, data, device_text, threads, model.parameters, trainer, process.world_size);
  RunLogs logs(dir.out_dir, run, lead, config.tensorboard, log_position(resumed, data, trainer));
  trainer.log_steps(lead && config.tensorboard ? config.tensorboard_every : 0,
                    [&](const StepLog& log) { logs.step(log); });
  RunResult result;
  result.out_dir = dir.out_dir;
  result.history = trainer.fit(data.train, data.test, progress, [&](const History& history) {
    logs.epoch(history, trainer.epoch_images_per_second());
  });
  result.seconds = trainer.run_seconds();
  result.seconds_this_part = std::chrono::duration<double>(Clock::now() - start).count();
  if (lead) {
    finish_run(result, config, data, model, trainer, run, dir, plotting, device_text, progress,
               start);
  }
  return result;
}

CommandSpec train_command() {
  return {"train", "  mgpu train [options]                 train and write history, summary, weights and plot\n", train_options,
          [](const cxxopts::ParseResult& r) {
            return make_command("train", parse_train(r), [](const TrainConfig& c, std::ostream& out) {
              run_training(c, out);
            });
          },
          with_recipe};
}

}  // namespace mgpu::app
