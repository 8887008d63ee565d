// mgpu train: its flags, and run_training: data, model, trainer and every file a run leaves
// behind.
#include "app/commands/Train.h"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <map>
#include <optional>

#include "app/commands/Command.h"      // defines: CommandSpec, make_command
#include "app/commands/Flags.h"        // defines: int_at_least, number, data_flags, ...
#include "app/commands/RecipeFlags.h"  // defines: add_recipe_flags, recipe_flags, ...
#include "app/commands/RunLogs.h"      // defines: RunLogs
#include "data/Datasets.h"             // defines: load_data
#include "data/InputError.h"           // defines: InputError
#include "data/Preprocess.h"           // defines: mean_image, subtract_mean
#include "models/Registry.h"           // defines: make_model
#include "train/Device.h"              // defines: select_devices, configure_kernels, set_threads
#include "train/Signals.h"             // defines: StopHandlers
#include "train/Trainer.h"             // defines: Trainer
#include "train/comm/Groups.h"         // defines: make_communicators
#include "train/comm/StoreGroup.h"     // defines: AssemblyStopped
#include "train/comm/Launcher.h"       // defines: read_launcher_env
#include "train/files/AtomicFile.h"    // defines: write_text_atomically, NewDirectories
#include "train/files/Pickle.h"        // defines: write_pickle
#include "train/files/Weights.h"       // defines: save_weights
#include "train/report/Plot.h"         // defines: plot_history
#include "train/report/Progress.h"     // defines: Progress

namespace mgpu::app {

using namespace mgpu::train;  // a command is built from the training library's parts
using data::InputError;
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

// Where the logs of a resumed run continue: the checkpoint's epochs and global steps.
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

}  // namespace

RunResult run_training(const TrainConfig& config, std::ostream& out) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  // First of all: a stop requested while the data loads is honoured after the first step.
  install_stop_handlers();
  const ProcessInfo process = read_launcher_env();
  const bool lead = process.rank == 0;  // only rank 0 prints and writes files
  Progress progress(lead ? config.verbose : 0, out);
  std::vector<torch::Device> devices = select_devices(config.gpus, config.cpu_replicas);
  if (process.world_size > 1 && config.gpus == 1) {
    devices = {torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(process.local_rank))};
  }
  const int64_t threads = set_threads(config.threads);
  configure_kernels(config);

  data::DataConfig data_config = config.data;
  data_config.check_shape = [&](int64_t channels, int64_t height, int64_t width, int64_t classes) {
    models::make_model(config.model, {channels, height, width, classes});  // throws if it cannot
  };
  data::DataSplit data = data::load_data(data_config);
  RunResult result;
  result.out_dir = config.out_dir.empty()
                       ? fs::path("runs") / fmt::format("{}-{}", data.name, timestamp())
                       : fs::path(config.out_dir);
  NewDirectories created;  // a run refused or failed before writing a file leaves none behind
  if (lead && config.out_dir.empty()) {
    result.out_dir = created.prepare_new(result.out_dir, "--out-dir");
  } else if (lead) {
    created.prepare(result.out_dir, "--out-dir");
  }
  const fs::path plot_path =
      config.plot_path.empty() ? result.out_dir / "plot.png" : fs::path(config.plot_path);
  if (lead) check_output_file(plot_path, "--output", "plot.png");
  if (lead && plot_path.has_parent_path()) created.prepare(plot_path.parent_path(), "--output");
  // The checkpoint to resume from, if any (its checks come with Trainer::resume below).
  const fs::path checkpoint_dir = result.out_dir / "checkpoints";
  std::optional<fs::path> from;
  if (config.resume == "auto") {
    from = latest_checkpoint(checkpoint_dir);
    if (!from) {
      progress.info(fmt::format("no checkpoint in {}: starting afresh", checkpoint_dir.string()));
    }
  } else if (!config.resume.empty()) {
    if (fs::is_regular_file(config.resume)) {
      from = fs::path(config.resume);
    } else if (process.world_size == 1) {
      throw data::InputError(fmt::format("--resume {}: no such checkpoint file", config.resume));
    }  // a process without the file gets another's copy (share_checkpoint below)
  }
  std::string no_plot_reason;
  const bool plotting = lead && can_plot(&no_plot_reason);

  torch::manual_seed(config.seed);  // weight initialisation and dropout
  const auto& shape = data.train.images.sizes();  // [N, C, H, W]
  const models::ModelShape model_shape{shape[1], shape[2], shape[3],
                                       static_cast<int64_t>(data.class_names.size())};
  auto net = models::make_model(config.model, model_shape);
  const int64_t parameters = models::count_parameters(*net.ptr());
  const torch::Tensor mean = data::mean_image(data.train.images);
  const auto& entry = models::find_model(config.model);
  if (entry.init && !from) {  // a resumed run has its weights from the checkpoint
    const int64_t n = std::min(models::kInitImages, data.train.size());
    entry.init(net, data::subtract_mean(data.train.images.narrow(0, 0, n), mean));
  }
  if (process.world_size > 1) {
    progress.info(fmt::format("processes: {} ({}), this is rank {} on {}:{}; waiting for all to "
                              "join (--comm-timeout {} s)",
                              process.world_size, process.launcher, process.rank,
                              process.master_addr, process.master_port, config.comm_timeout_s));
  }
  Trainer trainer(config, net, devices, mean, assemble(config, process, devices, from));

  CheckpointPolicy checkpoints;
  checkpoints.dir = checkpoint_dir;
  checkpoints.every_steps = config.checkpoint_every;
  checkpoints.keep = config.keep;
  checkpoints.writer = lead;
  checkpoints.fingerprint = run_fingerprint(config, data, trainer).dump();
  checkpoints.started = start;
  trainer.set_checkpoints(checkpoints);
  // Nodes that share no folder: the ranks without rank 0's checkpoint get a copy of it. Every
  // process of the job calls it (a collective), before any other.
  std::string sent;
  from = trainer.share_checkpoint(from, checkpoint_dir, &sent);
  if (!sent.empty()) progress.info("checkpoint " + sent);
  if (!from && !config.resume.empty() && config.resume != "auto") {  // no process had it
    trainer.agree_on_start(fmt::format("--resume {}: no such checkpoint file", config.resume));
  }
  if (!from && config.resume.empty() && lead) {
    if (const auto old = latest_checkpoint(checkpoint_dir)) {  // a fresh run would mix with it
      trainer.agree_on_start(fmt::format(
          "--out-dir {} holds the checkpoints of an earlier run ({}): continue that run with "
          "--resume auto, or give another --out-dir (or delete {} to start afresh there)",
          result.out_dir.string(), old->filename().string(), checkpoint_dir.string()));
    }
  }
  std::string device_text = describe_device(devices[0]);
  if (devices.size() > 1) device_text = fmt::format("{} x {}", devices.size(), device_text);
  progress.info(fmt::format("device: {}, LibTorch threads: {}", device_text, threads));
  progress.info(fmt::format("data: {} from {}: {} train, {} test images of {}x{}x{}, {} classes",
                            data.name, data.source, data.train.size(), data.test.size(), shape[1],
                            shape[2], shape[3], data.class_names.size()));
  progress.info(fmt::format("model: {} ({}), {} trainable parameters", config.model,
                            entry.description, parameters));
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
                            config.momentum, result.out_dir.string()));
  if (lead && !plotting) progress.warn(fmt::format("no plot will be drawn: {}", no_plot_reason));
  if (config.amp == "off" && !devices[0].is_cuda() && cpu_has_bf16()) {
    progress.info(
        "note: this CPU has bfloat16 instructions: --amp bf16 would train about twice as fast "
        "(measured by mgpu bench --levels on a 2-core Xeon with AMX: 2.2x for MiniGoogLeNet, "
        "1.9x for ResNet-20, docs/benchmarks.md); it computes the forward passes in bfloat16, "
        "so results differ from float32's beyond rounding");
  }
  if (config.amp == "fp16" && !devices[0].is_cuda()) {
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
  std::optional<Resumed> resumed;
  if (from) {
    try {
      resumed = trainer.resume(*from);
    } catch (const data::InputError& e) {
      trainer.agree_on_start(e.what());  // every process refuses, not only this one
      throw;                              // (agree_on_start threw already)
    }
    progress.info(fmt::format("resuming from {}", from->string()));
    if (const auto& lowered = resumed->lr_lowered) {
      progress.info(fmt::format(
          "learning rate lowered from --lr {} to {} from here on (recorded in summary.json)",
          lowered->from, lowered->to));
    }
    if (resumed->threads > 0 && resumed->threads != threads && !devices[0].is_cuda()) {
      progress.warn(fmt::format(
          "the checkpoint was written with {} LibTorch threads, this part has {}: on the CPU "
          "the sums of a step split by thread, so the run goes on correctly but not bit for "
          "bit as it would have (--threads {} repeats it exactly)",
          resumed->threads, threads, resumed->threads));
    }
  }

  const nlohmann::json run =
      run_json(config, data, device_text, threads, parameters, trainer, process.world_size);
  RunLogs logs(result.out_dir, run, lead, config.tensorboard, log_position(resumed, data, trainer));
  trainer.log_steps(lead && config.tensorboard ? config.tensorboard_every : 0,
                    [&](const StepLog& log) { logs.step(log); });
  auto save_epoch = [&](const History& history) {
    logs.epoch(history, trainer.epoch_images_per_second());
  };
  auto clock_result = [&] {
    result.seconds = trainer.run_seconds();
    result.seconds_this_part = std::chrono::duration<double>(Clock::now() - start).count();
  };
  result.history = trainer.fit(data.train, data.test, progress, save_epoch);
  clock_result();
  if (!lead) return result;

  // With how this run validated, which mgpu evaluate repeats.
  save_weights({config.model, model_shape, data.name, data.class_names, mean,
                trainer.model().clone(torch::kCPU),
                {config.tta, config.amp, config.channels_last}},
               result.out_dir / "model.pt");
  write_pickle(result.out_dir / "mean.pt", c10::IValue(mean.contiguous()));  // as export's
  clock_result();
  const auto summary = summary_json(config, data, run, trainer, result);
  write_text_atomically(result.out_dir / "summary.json", summary.dump(2) + "\n");
  if (plotting) {
    plot_history(result.history, plot_path,
                 fmt::format("{}, {}, {}", data.name, config.model, device_text));
    progress.info(fmt::format("plot: {}", plot_path.string()));
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
  return result;
}

namespace {

cxxopts::Options train_options() {
  cxxopts::Options o("mgpu train", "Train a model (MiniGoogLeNet by default) with the tutorial's recipe.");
  o.add_options()
      ("model", "the model to train (see mgpu models)",
       cxxopts::value<std::string>()->default_value("minigooglenet"))
      ("output", "path of the loss/accuracy plot (PNG); default <out-dir>/plot.png",
       cxxopts::value<std::string>()->default_value(""))
      ("gpus", "0: train on the CPU; 1: on the first CUDA GPU; default 1 if a GPU is visible",
       cxxopts::value<std::string>())
      ("dataset", "cifar10, cifar100, fashion-mnist, folder (DIR/train/CLASS/ and "
       "DIR/test/CLASS/ image files, or DIR/CLASS/ with --val-split), or auto (CIFAR-10 if its "
       "files are in --data-dir, else Fashion-MNIST)",
       cxxopts::value<std::string>()->default_value("auto"))
      ("labels", "with --dataset cifar100: fine (100 classes) or coarse (20 superclasses)",
       cxxopts::value<std::string>()->default_value("fine"))
      ("data-dir", "folder with cifar-10-batches-bin/ or cifar-100-binary/ (or their .bin "
       "files), the Fashion-MNIST IDX files, or the image folder; default ./data, and "
       "/usr/share/datasets/fashion-mnist for Fashion-MNIST",
       cxxopts::value<std::string>()->default_value(""))
      ("no-download", "with --dataset cifar10 or cifar100: never download the official archive "
       "when its files are not in --data-dir")
      ("epochs", "number of epochs; a fraction (e.g. 9.9) stops the run after ceil(steps per "
       "epoch x epochs) steps, part way through its last epoch", cxxopts::value<std::string>()->default_value("70"))
      ("lr", "initial learning rate", cxxopts::value<std::string>()->default_value("5e-3"))
      ("power", "lr decay power: lr * (1 - epoch/epochs)^power",
       cxxopts::value<std::string>()->default_value("1.0"))
      ("momentum", "SGD momentum, in [0, 1)", cxxopts::value<std::string>()->default_value("0.9"))
      ("lr-scaling", "none (the tutorial), or linear: multiply --lr by the global batch over "
       "--batch-per-device (Goyal et al., 2017)", cxxopts::value<std::string>()->default_value("none"))
      ("warmup-epochs", "with --lr-scaling linear: raise the rate step by step from --lr to the "
       "scaled rate over this many epochs", cxxopts::value<std::string>()->default_value("0"))
      ("batch-per-device", "images per step on each device",
       cxxopts::value<std::string>()->default_value("64"))
      ("cpu-replicas", "with --gpus 0: data-parallel replicas on the CPU (threads of this "
       "process, gradients summed every step)", cxxopts::value<std::string>()->default_value("1"))
      ("accumulate", "micro-batches per optimizer step on each replica: one device with "
       "--accumulate K reproduces K replicas", cxxopts::value<std::string>()->default_value("1"))
      ("comm", "how replicas reduce gradients: local (threads of this process), nccl, or auto "
       "(nccl for several GPUs, else local)", cxxopts::value<std::string>()->default_value("auto"))
      ("comm-timeout", "seconds a replica waits for its peers in a collective before the run "
       "fails", cxxopts::value<std::string>()->default_value("300"))
      ("seed", "seed of weights, shuffling, augmentation and dropout",
       cxxopts::value<std::string>()->default_value("42"))
      ("deterministic", "deterministic cuDNN and LibTorch kernels, so that a GPU run repeats "
       "bit for bit (slower; CPU runs repeat anyway)")
      ("threads", "LibTorch CPU threads; 0: all cores", cxxopts::value<std::string>()->default_value("0"))
      ("limit-train", "use only the first N training images (0: all)",
       cxxopts::value<std::string>()->default_value("0"))
      ("limit-test", "use only the first N test images (0: all)",
       cxxopts::value<std::string>()->default_value("0"))
      ("out-dir", "run directory for history.csv, summary.json, model.pt, mean.pt, plot.png "
       "and checkpoints/; default runs/<dataset>-<time>",
       cxxopts::value<std::string>()->default_value(""))
      ("checkpoint-every", "also write a checkpoint every N steps (0: only at the end of each "
       "epoch)", cxxopts::value<std::string>()->default_value("0"))
      ("keep", "older checkpoints kept besides the newest",
       cxxopts::value<std::string>()->default_value("1"))
      ("resume", "continue a run: auto (the newest checkpoint in --out-dir/checkpoints, or a "
       "fresh start if there is none) or a checkpoint file",
       cxxopts::value<std::string>()->default_value(""))
      ("no-tensorboard", "write no TensorBoard event files (default: <out-dir>/tensorboard, "
       "rank 0 only)")
      ("tensorboard-every", "also log the training loss and rate to TensorBoard every N steps "
       "(0: once an epoch only)", cxxopts::value<std::string>()->default_value("50"))
      ("verbose", "0 silent, 1 progress bar (default on a terminal), 2 one line per epoch "
       "(default otherwise)", cxxopts::value<std::string>())
      ("h,help", "show this help");
  add_speed_flags(o);
  add_folder_flags(o);
  add_recipe_flags(o);
  return o;
}

TrainConfig parse_train(const cxxopts::ParseResult& r) {
  TrainConfig c;
  c.model = models::find_model(get<std::string>(r, "model")).name;
  c.plot_path = get<std::string>(r, "output");
  c.gpus = gpus_flag(r);
  c.data = data_flags(r);
  c.data.limit_train = int_at_least(r, "limit-train", 0);
  c.epochs = number(r, "epochs");
  if (!(c.epochs > 0 && c.epochs <= kMaxEpochs)) {
    throw InputError(fmt::format("--epochs {}: expected a number of epochs > 0 and at most {} "
                                 "(a fraction ends the run part way through its last epoch)",
                                 get<std::string>(r, "epochs"), kMaxEpochs));
  }
  c.batch_per_device = int_at_least(r, "batch-per-device", 1, kMaxBatch);
  c.cpu_replicas = int_at_least(r, "cpu-replicas", 1, kMaxReplicas);
  if (c.cpu_replicas > 1 && c.gpus > 0) {
    throw InputError(fmt::format("--cpu-replicas {} needs --gpus 0", c.cpu_replicas));
  }
  c.accumulate = int_at_least(r, "accumulate", 1, kMaxBatch);
  c.tensorboard = !r.count("no-tensorboard");
  c.tensorboard_every = int_at_least(r, "tensorboard-every", 0);
  c.comm = get<std::string>(r, "comm");
  if (c.comm != "auto" && c.comm != "local" && c.comm != "nccl") {
    throw InputError(fmt::format("--comm '{}': expected auto, local or nccl", c.comm));
  }
  c.comm_timeout_s = number(r, "comm-timeout");
  if (!std::isfinite(c.comm_timeout_s) || c.comm_timeout_s <= 0 || c.comm_timeout_s > kMaxTimeout) {
    throw InputError(fmt::format("--comm-timeout {}: expected seconds > 0 and at most {} (a week)",
                                 c.comm_timeout_s, kMaxTimeout));
  }
  c.threads = int_at_least(r, "threads", 0, kMaxThreads);
  c.seed = static_cast<uint64_t>(int_at_least(r, "seed", 0));
  c.deterministic = flag_on(r, "deterministic");
  speed_flags(r, c);
  if (c.cuda_graphs && c.gpus == 0) {
    throw InputError("--cuda-graphs needs a GPU (--gpus 1 or more): CPU training has no CUDA graphs");
  }
  c.lr = number(r, "lr");
  if (!std::isfinite(c.lr) || c.lr <= 0 || c.lr > std::numeric_limits<float>::max()) {
    throw InputError(fmt::format("--lr {}: expected a number > 0 and at most {} (a float32)",
                                 c.lr, std::numeric_limits<float>::max()));
  }
  c.power = number(r, "power");
  if (!std::isfinite(c.power) || c.power < 0) {
    throw InputError(fmt::format("--power {}: expected a finite number >= 0", c.power));
  }
  c.momentum = number(r, "momentum");
  if (!std::isfinite(c.momentum) || c.momentum < 0 || c.momentum >= 1) {
    throw InputError(fmt::format("--momentum {}: expected a number in [0, 1)", c.momentum));
  }
  c.lr_scaling = get<std::string>(r, "lr-scaling");
  if (c.lr_scaling != "none" && c.lr_scaling != "linear") {
    throw InputError(fmt::format("--lr-scaling '{}': expected none or linear", c.lr_scaling));
  }
  c.warmup_epochs = number(r, "warmup-epochs");
  if (!std::isfinite(c.warmup_epochs) || c.warmup_epochs < 0 ||
      c.warmup_epochs > c.epochs) {
    throw InputError(fmt::format("--warmup-epochs {}: expected a number from 0 to --epochs ({})",
                                 c.warmup_epochs, c.epochs));
  }
  if (c.warmup_epochs > 0 && c.lr_scaling != "linear") {
    throw InputError(fmt::format(
        "--warmup-epochs {} needs --lr-scaling linear: the warm-up rises from --lr to the scaled "
        "rate, and without scaling there is nothing to rise to",
        c.warmup_epochs));
  }
  recipe_flags(r, c);
  c.verbose = r.count("verbose") ? static_cast<int>(int_at_least(r, "verbose", 0, 2))
                                 : (isatty(STDOUT_FILENO) ? 1 : 2);
  c.out_dir = get<std::string>(r, "out-dir");
  c.checkpoint_every = int_at_least(r, "checkpoint-every", 0);
  c.keep = int_at_least(r, "keep", 0);
  c.resume = get<std::string>(r, "resume");
  if (c.resume == "auto" && c.out_dir.empty()) {
    throw InputError("--resume auto needs --out-dir: the run directory whose checkpoints/ to "
                     "continue from");
  }
  return c;
}

// The model's recipe (models/Models.def) before the user's flags, less the flags the user gave.
std::vector<std::string> with_recipe(const cxxopts::ParseResult& r,
                                     const std::vector<std::string>& args) {
  // A flag the user gives replaces the recipe's value of it and of the flags that qualify it:
  // --schedule cosine drops the recipe's --lr-knots.
  static const std::map<std::string, std::string> qualifies = {
      {"lr-knots", "schedule"}, {"power", "schedule"},   {"milestones", "schedule"},
      {"gamma", "schedule"},    {"lookahead-decay", "lookahead"}};
  const auto given = [&](const std::string& flag) {
    const auto q = qualifies.find(flag);
    return r.count(flag) > 0 || (q != qualifies.end() && r.count(q->second) > 0);
  };
  std::vector<std::string> full{args.front()};
  for (const auto& word : models::find_model(get<std::string>(r, "model")).recipe) {
    if (!given(word.substr(2, word.find('=') - 2))) full.push_back(word);
  }
  full.insert(full.end(), args.begin() + 1, args.end());
  return full;
}

}  // namespace

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
