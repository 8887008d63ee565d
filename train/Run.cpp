// run_training: data, model, trainer and every file a run leaves behind.
#include "train/Run.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <optional>

#include "data/Datasets.h"
#include "data/InputError.h"
#include "data/Preprocess.h"
#include "models/Registry.h"
#include "train/Device.h"
#include "train/Launcher.h"
#include "train/NcclGroup.h"
#include "train/Plot.h"
#include "train/Progress.h"
#include "train/Signals.h"
#include "train/GlooGroup.h"
#include "train/StoreGroup.h"
#include "train/Trainer.h"
#include "train/Weights.h"

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", std::localtime(&now));
  return text;
}

nlohmann::json summary_json(const TrainConfig& config, const data::DataSplit& data,
                            const std::string& device, int64_t threads, int64_t parameters,
                            const Trainer& trainer, const History& history, double seconds) {
  nlohmann::json j;
  j["model"] = config.model;
  j["parameters"] = parameters;
  j["dataset"] = data.name;
  j["data_source"] = data.source;
  j["train_images"] = data.train.size();
  j["test_images"] = data.test.size();
  j["image_shape"] = data.train.images.sizes().slice(1).vec();
  j["device"] = device;
  j["threads"] = threads;
  j["config"] = {{"epochs", config.epochs},
                 {"lr", config.lr},
                 {"power", config.power},
                 {"momentum", config.momentum},
                 {"batch_per_device", config.batch_per_device},
                 {"accumulate", config.accumulate},
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
                 {"tf32", config.tf32}};
  j["epochs_completed"] = history.size();
  j["seconds"] = seconds;
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

// What a checkpoint must match to continue this run: the model, the data, and everything that
// shapes the trajectory.
nlohmann::json run_fingerprint(const TrainConfig& config, const data::DataSplit& data,
                               const Trainer& trainer) {
  return {{"model", config.model},
          {"dataset", data.name},
          {"train_images", data.train.size()},
          {"test_images", data.test.size()},
          {"image_shape", data.train.images.sizes().slice(1).vec()},
          {"classes", data.class_names.size()},
          {"replicas", trainer.world_size()},
          {"batch_per_device", config.batch_per_device},
          {"accumulate", config.accumulate},
          {"epochs", config.epochs},
          {"lr", config.lr},
          {"power", config.power},
          {"momentum", config.momentum},
          {"lr_scaling", config.lr_scaling},
          {"warmup_epochs", config.warmup_epochs},
          {"amp", config.amp},
          {"optimizer", config.fused_sgd || config.cuda_graphs ? "fused-sgd" : "sgd"},
          {"seed", config.seed}};
}

// The replicas' communicators. Several processes (a launcher's variables are set): NCCL
// between GPUs (one process per GPU, or per node driving all its GPUs; every process must have
// as many as the others), Gloo between CPU processes (one replica each). One process:
// NCCL between its GPUs, else the in-process group the Trainer makes.
std::vector<std::unique_ptr<Communicator>> make_communicators(
    const TrainConfig& config, const ProcessInfo& process, const std::vector<torch::Device>& devices) {
  const bool gpus = devices[0].is_cuda();
  const bool nccl = config.comm == "nccl" || (config.comm == "auto" && gpus &&
                                               (devices.size() > 1 || process.world_size > 1));
  if (process.world_size == 1) {
    if (!nccl) return {};
    return make_nccl_group(devices, config.comm_timeout_s);
  }
  if (nccl && !gpus) throw data::InputError("--comm nccl needs GPUs (--gpus 1 or more)");
  auto store = connect_store(process, config.comm_timeout_s);
  if (nccl) {
    const int per_process = static_cast<int>(devices.size());
    return make_nccl_ranks(devices, *store, process.rank * per_process,
                           process.world_size * per_process, config.comm_timeout_s);
  }
  if (devices.size() != 1) {
    throw data::InputError(fmt::format(
        "{} started {} processes: on the CPU each drives one replica, so use --cpu-replicas 1",
        process.launcher, process.world_size));
  }
  std::vector<std::unique_ptr<Communicator>> comms;
  comms.push_back(make_gloo_communicator(store, process.rank, process.world_size,
                                         config.comm_timeout_s));
  return comms;
}

}  // namespace

RunResult run_training(const TrainConfig& config, std::ostream& out) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const ProcessInfo process = read_launcher_env();
  const bool lead = process.rank == 0;  // only rank 0 prints and writes files
  Progress progress(lead ? config.verbose : 0, out);
  std::vector<torch::Device> devices = select_devices(config.gpus, config.cpu_replicas);
  if (process.world_size > 1 && config.gpus == 1) {
    devices = {torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(process.local_rank))};
  }
  const int64_t threads = set_threads(config.threads);
  configure_kernels(config);

  data::DataSplit data = data::load_data(config.data);
  RunResult result;
  result.out_dir = config.out_dir.empty()
                       ? fs::path("runs") / fmt::format("{}-{}", data.name, timestamp())
                       : fs::path(config.out_dir);
  const fs::path plot_path =
      config.plot_path.empty() ? result.out_dir / "plot.png" : fs::path(config.plot_path);
  if (lead) {
    prepare_output_dir(result.out_dir, "--out-dir");
    if (plot_path.has_parent_path()) prepare_output_dir(plot_path.parent_path(), "--output");
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
  Trainer trainer(config, net, devices, mean,
                  make_communicators(config, process, devices));

  std::string device_text = describe_device(devices[0]);
  if (devices.size() > 1) device_text = fmt::format("{} x {}", devices.size(), device_text);
  progress.info(fmt::format("device: {}, LibTorch threads: {}", device_text, threads));
  progress.info(fmt::format("data: {} from {}: {} train, {} test images of {}x{}x{}, {} classes",
                            data.name, data.source, data.train.size(), data.test.size(), shape[1],
                            shape[2], shape[3], data.class_names.size()));
  progress.info(fmt::format("model: {} ({}), {} trainable parameters", config.model,
                            models::find_model(config.model).description, parameters));
  progress.info(fmt::format("training {} epochs, global batch {} ({} replica(s) x {} images x {} "
                            "micro-batch(es)), lr {} (power {}), momentum {}; writing to {}",
                            config.epochs, trainer.global_batch(), trainer.world_size(),
                            config.batch_per_device, config.accumulate, config.lr, config.power,
                            config.momentum, result.out_dir.string()));
  if (process.world_size > 1) {
    progress.info(fmt::format("processes: {} ({}), this is rank {} on {}:{}", process.world_size,
                              process.launcher, process.rank, process.master_addr,
                              process.master_port));
  }
  if (lead && !plotting) progress.warn(fmt::format("no plot will be drawn: {}", no_plot_reason));

  CheckpointPolicy checkpoints;
  checkpoints.dir = result.out_dir / "checkpoints";
  checkpoints.every_steps = config.checkpoint_every;
  checkpoints.keep = config.keep;
  checkpoints.writer = lead;
  checkpoints.fingerprint = run_fingerprint(config, data, trainer).dump();
  trainer.set_checkpoints(checkpoints);
  if (!config.resume.empty()) {
    std::optional<fs::path> from;
    if (config.resume == "auto") {
      from = latest_checkpoint(checkpoints.dir);
      if (!from) progress.info(fmt::format("no checkpoint in {}: starting afresh", checkpoints.dir.string()));
    } else if (!fs::is_regular_file(config.resume)) {
      throw data::InputError(fmt::format("--resume {}: no such checkpoint file", config.resume));
    } else {
      from = fs::path(config.resume);
    }
    if (from) {
      trainer.resume(*from);
      progress.info(fmt::format("resuming from {}", from->string()));
    }
  }
  install_stop_handlers();

  auto save_epoch = [&](const History& history) {
    if (lead) write_text_atomically(result.out_dir / "history.csv", history_csv(history));
  };
  result.history = trainer.fit(data.train, data.test, progress, save_epoch);
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!lead) return result;

  save_weights({config.model, model_shape, data.name, data.class_names, mean,
                trainer.model().clone(torch::kCPU)},
               result.out_dir / "model.pt");
  write_atomically(result.out_dir / "mean.pt",
                   [&](const fs::path& tmp) { torch::save(mean, tmp.string()); });
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto summary = summary_json(config, data, device_text, threads, parameters, trainer,
                                    result.history, result.seconds);
  write_text_atomically(result.out_dir / "summary.json", summary.dump(2) + "\n");
  if (plotting) {
    plot_history(result.history, plot_path,
                 fmt::format("{}, {}, {}", data.name, config.model, device_text));
    progress.info(fmt::format("plot: {}", plot_path.string()));
  }
  progress.info(fmt::format("training throughput: {:.1f} images/s (training steps only)",
                            trainer.images_per_second()));
  progress.info(fmt::format("total wall time: {:.1f}s ({:.1f} min); final val_acc {:.4f}",
                            result.seconds, result.seconds / 60, result.history.back().val_acc));
  return result;
}

void plot_from_csv(const fs::path& csv, const fs::path& png) {
  const History history = read_history_csv(csv);
  std::string why;
  if (!can_plot(&why)) throw std::runtime_error("cannot plot: " + why);
  if (png.has_parent_path()) prepare_output_dir(png.parent_path(), "--output");
  plot_history(history, png, csv.string());
}

}  // namespace mgpu::train
