// cxxopts definitions and validation of every flag.
#include "app/Cli.h"

#include <fmt/core.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <cxxopts.hpp>

#include "data/InputError.h"
#include "models/Registry.h"  // defines: find_model

namespace mgpu::app {

namespace {

using data::InputError;

// Upper bounds of flags whose huge values would exhaust the machine or overflow.
constexpr int64_t kMaxThreads = 1024;
constexpr int64_t kMaxReplicas = 256;
constexpr int64_t kMaxBatch = 65536;
constexpr double kMaxTimeout = 7 * 24 * 3600;

constexpr const char* kTopHelp = R"(mgpu: data-parallel CNN training with LibTorch (MiniGoogLeNet on CIFAR-10,
after the PyImageSearch multi-GPU Keras tutorial).

Usage:
  mgpu train [options]                 train and write history, summary, weights and plot
  mgpu plot HISTORY.csv --output PNG   redraw the loss/accuracy plot from a history.csv
  mgpu bench --gpus 1,2,4              compare steady-state step times of replica counts
  mgpu bench --cpu-replicas 1,2        the same with replicas on the CPU
  mgpu bench --gpus 1 --levels all     time each speed-up (channels-last, bf16, fused SGD,
                                       CUDA graphs) on its own, one above the other
  mgpu models                          the models --model can name, with parameter counts
  mgpu evaluate --weights RUN/model.pt loss, accuracy, per-class accuracy, confusion matrix
  mgpu predict --weights RUN/model.pt IMAGE...   top classes of PNG/JPEG images
  mgpu export --weights RUN/model.pt --to model.pt   a state_dict for Python's torch.load
  mgpu help | --help                   this text; `mgpu COMMAND --help` explains each flag

Exit codes: 0 success, 1 failure while running, 2 bad usage or input.
)";

// The switches that change how fast a step runs, not what it computes (up to rounding).
void add_speed_flags(cxxopts::Options& o) {
  o.add_options("speed")
      ("amp", "mixed precision: off, or bf16 (forward passes autocast to bfloat16; weights, "
       "gradients and batch-norm statistics stay float32)",
       cxxopts::value<std::string>()->default_value("off"))
      ("channels-last", "weights and images in NHWC memory order (faster convolutions on "
       "tensor cores and on CPUs)")
      ("fused-sgd", "SGD with momentum over one flat buffer of all parameters: 3 kernels a step "
       "instead of 3 per tensor")
      ("cuda-graphs", "GPU: capture the whole training step (augmentation, forward, backward, "
       "all-reduce, optimizer) once and replay it; implies --fused-sgd")
      ("no-cudnn-benchmark", "do not let cuDNN time its algorithms for each shape (autotuning "
       "is on unless --deterministic)")
      ("no-tf32", "keep float32 convolutions and matmuls in full float32 (TF32 tensor cores "
       "are allowed by default)");
}

cxxopts::Options train_options() {
  cxxopts::Options o("mgpu train", "Train a model (MiniGoogLeNet by default) with the tutorial's recipe.");
  o.add_options()
      ("model", "the model to train (see mgpu models)",
       cxxopts::value<std::string>()->default_value("minigooglenet"))
      ("output", "path of the loss/accuracy plot (PNG); default <out-dir>/plot.png",
       cxxopts::value<std::string>()->default_value(""))
      ("gpus", "0: train on the CPU; 1: on the first CUDA GPU; default 1 if a GPU is visible",
       cxxopts::value<std::string>())
      ("dataset", "cifar10, fashion-mnist, or auto (CIFAR-10 if its files are in --data-dir, "
       "else Fashion-MNIST)", cxxopts::value<std::string>()->default_value("auto"))
      ("data-dir", "folder with cifar-10-batches-bin/ (or its .bin files) or the Fashion-MNIST "
       "IDX files; default ./data, and /usr/share/datasets/fashion-mnist for Fashion-MNIST",
       cxxopts::value<std::string>()->default_value(""))
      ("no-download", "with --dataset cifar10: never download the official archive when its "
       "files are not in --data-dir")
      ("epochs", "number of epochs", cxxopts::value<std::string>()->default_value("70"))
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
      ("verbose", "0 silent, 1 progress bar (default on a terminal), 2 one line per epoch "
       "(default otherwise)", cxxopts::value<std::string>())
      ("h,help", "show this help");
  add_speed_flags(o);
  return o;
}

cxxopts::Options plot_options() {
  cxxopts::Options o("mgpu plot", "Redraw the loss/accuracy plot from a history.csv.");
  o.positional_help("HISTORY.csv");
  o.add_options()
      ("history", "history.csv written by mgpu train", cxxopts::value<std::string>())
      ("output", "PNG to write", cxxopts::value<std::string>()->default_value("plot.png"))
      ("h,help", "show this help");
  o.parse_positional({"history"});
  return o;
}

cxxopts::Options bench_options() {
  cxxopts::Options o("mgpu bench", "Time steady-state training steps for several replica counts.");
  o.add_options()
      ("model", "the model to time (see mgpu models)",
       cxxopts::value<std::string>()->default_value("minigooglenet"))
      ("gpus", "comma-separated GPU counts, e.g. 1,2,4", cxxopts::value<std::string>())
      ("cpu-replicas", "comma-separated CPU replica counts, e.g. 1,2 (default 1,2)",
       cxxopts::value<std::string>())
      ("steps", "timed steps per configuration", cxxopts::value<std::string>()->default_value("20"))
      ("warmup", "untimed steps first", cxxopts::value<std::string>()->default_value("3"))
      ("batch-per-device", "images per step on each replica",
       cxxopts::value<std::string>()->default_value("64"))
      ("threads", "LibTorch CPU threads; 0: all cores", cxxopts::value<std::string>()->default_value("0"))
      ("comm", "local or nccl between GPUs (auto: nccl)", cxxopts::value<std::string>()->default_value("auto"))
      ("levels", "time the optimisation levels, each adding to the one before: fp32, "
       "channels-last, bf16, fused-sgd, cuda-graphs (GPU only); 'all', or a comma-separated "
       "choice (the speed flags are then ignored)", cxxopts::value<std::string>())
      ("out-dir", "where bench.csv and bench.png go; default runs/bench-<time>",
       cxxopts::value<std::string>()->default_value(""))
      ("h,help", "show this help");
  add_speed_flags(o);
  return o;
}

cxxopts::Options models_options() {
  cxxopts::Options o("mgpu models", "List the models mgpu train --model can name.");
  o.add_options()("h,help", "show this help");
  return o;
}

// Flags every command that loads a weights file shares.
void add_weights_flags(cxxopts::Options& o) {
  o.add_options()
      ("weights", "a weights file (a run's model.pt) or a run directory",
       cxxopts::value<std::string>())
      ("gpus", "0: the CPU; 1: the first CUDA GPU; default 1 if a GPU is visible",
       cxxopts::value<std::string>())
      ("threads", "LibTorch CPU threads; 0: all cores", cxxopts::value<std::string>()->default_value("0"))
      ("h,help", "show this help");
}

cxxopts::Options evaluate_options() {
  cxxopts::Options o("mgpu evaluate", "Loss, accuracy, per-class accuracy and confusion matrix "
                                      "of trained weights on a test set.");
  add_weights_flags(o);
  o.add_options()
      ("dataset", "cifar10, fashion-mnist, or auto (the one the weights were trained on)",
       cxxopts::value<std::string>()->default_value("auto"))
      ("data-dir", "folder with the data set's files (as for mgpu train)",
       cxxopts::value<std::string>()->default_value(""))
      ("no-download", "never download CIFAR-10 when its files are not in --data-dir")
      ("limit-test", "use only the first N test images (0: all)",
       cxxopts::value<std::string>()->default_value("0"))
      ("batch", "images per forward pass", cxxopts::value<std::string>()->default_value("256"))
      ("out-dir", "where evaluation.json, confusion.csv and confusion.png go; default the "
       "weights file's folder", cxxopts::value<std::string>()->default_value(""));
  return o;
}

cxxopts::Options predict_options() {
  cxxopts::Options o("mgpu predict", "Top classes of images (PNG, JPEG, BMP, ...; any size, "
                                     "resized to the model's input) under trained weights.");
  o.positional_help("IMAGE...");
  add_weights_flags(o);
  o.add_options()
      ("top", "classes shown per image", cxxopts::value<std::string>()->default_value("3"))
      ("images", "image files", cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"images"});
  return o;
}

cxxopts::Options export_options() {
  cxxopts::Options o("mgpu export", "Write trained weights as a PyTorch state_dict for Python "
                                    "(torch.load), with the mean image and a description.");
  o.add_options()
      ("weights", "a weights file (a run's model.pt) or a run directory",
       cxxopts::value<std::string>())
      ("to", "the state_dict file to write, e.g. model.pt (also writes model.mean.pt and "
       "model.json beside it)", cxxopts::value<std::string>())
      ("h,help", "show this help");
  return o;
}

cxxopts::ParseResult parse(cxxopts::Options& options, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    auto result = options.parse(static_cast<int>(argv.size()), argv.data());
    if (!result.unmatched().empty()) {
      throw InputError(fmt::format("{}: unexpected argument '{}'", options.program(),
                                   result.unmatched().front()));
    }
    return result;
  } catch (const cxxopts::exceptions::exception& e) {
    throw InputError(fmt::format("{}: {} (see {} --help)", options.program(), e.what(),
                                 options.program()));
  }
}

template <typename T>
T get(const cxxopts::ParseResult& r, const std::string& flag) {
  try {
    return r[flag].as<T>();
  } catch (const cxxopts::exceptions::exception& e) {
    throw InputError(fmt::format("--{}: {}", flag, e.what()));
  }
}

// Numbers are parsed here rather than by cxxopts so that every message names its flag.
// An integer flag in [min, max]; max guards against values that would exhaust the machine
// (threads, replicas, batch sizes) or overflow a conversion (timeouts).
int64_t int_at_least(const cxxopts::ParseResult& r, const std::string& flag, int64_t min,
                     int64_t max = std::numeric_limits<int64_t>::max()) {
  const auto text = get<std::string>(r, flag);
  const std::string expected =
      max == std::numeric_limits<int64_t>::max()
          ? fmt::format("an integer >= {}", min)
          : fmt::format("an integer from {} to {}", min, max);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw InputError(fmt::format("--{} '{}': expected {}", flag, text, expected));
  }
  if (v < min || v > max) throw InputError(fmt::format("--{} {}: expected {}", flag, v, expected));
  return v;
}

double number(const cxxopts::ParseResult& r, const std::string& flag) {
  const auto text = get<std::string>(r, flag);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) {
    throw InputError(fmt::format("--{} '{}': expected a number", flag, text));
  }
  return v;
}

std::vector<int64_t> count_list(const cxxopts::ParseResult& r, const std::string& flag) {
  const auto text = get<std::string>(r, flag);
  std::vector<int64_t> counts;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || v < 1 ||
        v > kMaxReplicas) {
      throw InputError(fmt::format(
          "--{} '{}': expected counts from 1 to {} separated by commas, e.g. 1,2,4", flag, text,
          kMaxReplicas));
    }
    counts.push_back(v);
    start = comma + 1;
  }
  return counts;
}

void speed_flags(const cxxopts::ParseResult& r, train::TrainConfig& c) {
  c.amp = get<std::string>(r, "amp");
  if (c.amp != "off" && c.amp != "bf16") {
    throw InputError(fmt::format("--amp '{}': expected off or bf16", c.amp));
  }
  c.channels_last = r.count("channels-last") > 0;
  c.cuda_graphs = r.count("cuda-graphs") > 0;
  c.fused_sgd = r.count("fused-sgd") > 0 || c.cuda_graphs;
  c.cudnn_benchmark = r.count("no-cudnn-benchmark") == 0;
  c.tf32 = r.count("no-tf32") == 0;
}

train::BenchConfig parse_bench(const cxxopts::ParseResult& r) {
  train::BenchConfig c;
  if (r.count("gpus") && r.count("cpu-replicas")) {
    throw InputError("mgpu bench: give --gpus or --cpu-replicas, not both");
  }
  c.gpus = r.count("gpus") > 0;
  if (r.count("levels")) c.levels = train::bench_levels(get<std::string>(r, "levels"), c.gpus);
  c.replicas = c.gpus ? count_list(r, "gpus")
                      : r.count("cpu-replicas") ? count_list(r, "cpu-replicas")
                      : c.levels.empty() ? std::vector<int64_t>{1, 2}
                                         : std::vector<int64_t>{1};
  speed_flags(r, c.train);
  if (c.train.cuda_graphs && !c.gpus) {
    throw InputError("--cuda-graphs needs GPUs (mgpu bench --gpus N): CPU training has no CUDA graphs");
  }
  c.train.model = models::find_model(get<std::string>(r, "model")).name;
  c.steps = int_at_least(r, "steps", 1);
  c.warmup = int_at_least(r, "warmup", 0);
  c.train.batch_per_device = int_at_least(r, "batch-per-device", 1, kMaxBatch);
  c.train.threads = int_at_least(r, "threads", 0, kMaxThreads);
  c.train.comm = get<std::string>(r, "comm");
  if (c.train.comm != "auto" && c.train.comm != "local" && c.train.comm != "nccl") {
    throw InputError(fmt::format("--comm '{}': expected auto, local or nccl", c.train.comm));
  }
  c.out_dir = get<std::string>(r, "out-dir");
  return c;
}

// --weights, --gpus and --threads of evaluate and predict.
std::string weights_flag(const cxxopts::ParseResult& r, const std::string& command) {
  if (!r.count("weights")) {
    throw InputError(fmt::format("mgpu {}: give --weights (a run's model.pt or its directory)",
                                 command));
  }
  return get<std::string>(r, "weights");
}

// --gpus up to max; without it, 1 if a GPU is visible, else 0.
int64_t gpus_flag(const cxxopts::ParseResult& r,
                  int64_t max = std::numeric_limits<int64_t>::max()) {
  if (!r.count("gpus")) return torch::cuda::is_available() ? 1 : 0;
  return int_at_least(r, "gpus", 0, max);
}

// --dataset, --data-dir, --no-download and --limit-test (train reads --limit-train as well).
data::DataConfig data_flags(const cxxopts::ParseResult& r) {
  data::DataConfig d;
  d.dataset = get<std::string>(r, "dataset");
  if (d.dataset != "cifar10" && d.dataset != "fashion-mnist" && d.dataset != "auto") {
    throw InputError(
        fmt::format("--dataset '{}': expected cifar10, fashion-mnist or auto", d.dataset));
  }
  d.data_dir = get<std::string>(r, "data-dir");
  d.download = r.count("no-download") == 0;
  d.limit_test = int_at_least(r, "limit-test", 0);
  return d;
}

train::EvaluateConfig parse_evaluate(const cxxopts::ParseResult& r) {
  train::EvaluateConfig c;
  c.weights = weights_flag(r, "evaluate");
  c.gpus = gpus_flag(r, 1);
  c.threads = int_at_least(r, "threads", 0, kMaxThreads);
  c.data = data_flags(r);
  c.data.limit_train = 1;  // evaluation reads the training files but uses none of them
  c.batch = int_at_least(r, "batch", 1, kMaxBatch);
  c.out_dir = get<std::string>(r, "out-dir");
  return c;
}

train::PredictConfig parse_predict(const cxxopts::ParseResult& r) {
  train::PredictConfig c;
  c.weights = weights_flag(r, "predict");
  c.gpus = gpus_flag(r, 1);
  c.threads = int_at_least(r, "threads", 0, kMaxThreads);
  c.top = int_at_least(r, "top", 1, kMaxBatch);
  if (!r.count("images")) throw InputError("mgpu predict: name one or more image files");
  c.images = get<std::vector<std::string>>(r, "images");
  return c;
}

train::TrainConfig parse_train(const cxxopts::ParseResult& r) {
  train::TrainConfig c;
  c.model = models::find_model(get<std::string>(r, "model")).name;
  c.plot_path = get<std::string>(r, "output");
  c.gpus = gpus_flag(r);
  c.data = data_flags(r);
  c.data.limit_train = int_at_least(r, "limit-train", 0);
  c.epochs = int_at_least(r, "epochs", 1);
  c.batch_per_device = int_at_least(r, "batch-per-device", 1, kMaxBatch);
  c.cpu_replicas = int_at_least(r, "cpu-replicas", 1, kMaxReplicas);
  if (c.cpu_replicas > 1 && c.gpus > 0) {
    throw InputError(fmt::format("--cpu-replicas {} needs --gpus 0", c.cpu_replicas));
  }
  c.accumulate = int_at_least(r, "accumulate", 1, kMaxBatch);
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
  c.deterministic = r.count("deterministic") > 0;
  speed_flags(r, c);
  if (c.cuda_graphs && c.gpus == 0) {
    throw InputError("--cuda-graphs needs a GPU (--gpus 1 or more): CPU training has no CUDA graphs");
  }
  c.lr = number(r, "lr");
  if (!std::isfinite(c.lr) || c.lr <= 0) {
    throw InputError(fmt::format("--lr {}: expected a finite number > 0", c.lr));
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
      c.warmup_epochs > static_cast<double>(c.epochs)) {
    throw InputError(fmt::format("--warmup-epochs {}: expected a number from 0 to --epochs ({})",
                                 c.warmup_epochs, c.epochs));
  }
  c.verbose = r.count("verbose") ? static_cast<int>(int_at_least(r, "verbose", 0))
                                 : (isatty(STDOUT_FILENO) ? 1 : 2);
  if (c.verbose > 2) throw InputError(fmt::format("--verbose {}: expected 0, 1 or 2", c.verbose));
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

}  // namespace

Command parse_command_line(const std::vector<std::string>& args) {
  Command cmd;
  if (args.size() < 2 || args[1] == "help" || args[1] == "--help" || args[1] == "-h") {
    cmd.help = kTopHelp;
    return cmd;
  }
  // Each command: its flags, and how a parse result fills the Command.
  struct Entry {
    const char* name;
    cxxopts::Options (*options)();
    std::function<void(const cxxopts::ParseResult&, Command&)> fill;
  };
  const Entry commands[] = {
      {"train", train_options,
       [](const cxxopts::ParseResult& r, Command& c) {
         c.kind = Command::Kind::kTrain;
         c.train = parse_train(r);
       }},
      {"plot", plot_options,
       [](const cxxopts::ParseResult& r, Command& c) {
         if (!r.count("history")) throw InputError("mgpu plot: name the history.csv to plot");
         c.kind = Command::Kind::kPlot;
         c.plot_csv = get<std::string>(r, "history");
         c.plot_output = get<std::string>(r, "output");
       }},
      {"bench", bench_options,
       [](const cxxopts::ParseResult& r, Command& c) {
         c.kind = Command::Kind::kBench;
         c.bench = parse_bench(r);
       }},
      {"models", models_options,
       [](const cxxopts::ParseResult&, Command& c) { c.kind = Command::Kind::kModels; }},
      {"evaluate", evaluate_options,
       [](const cxxopts::ParseResult& r, Command& c) {
         c.kind = Command::Kind::kEvaluate;
         c.evaluate = parse_evaluate(r);
       }},
      {"predict", predict_options,
       [](const cxxopts::ParseResult& r, Command& c) {
         c.kind = Command::Kind::kPredict;
         c.predict = parse_predict(r);
       }},
      {"export", export_options,
       [](const cxxopts::ParseResult& r, Command& c) {
         c.kind = Command::Kind::kExport;
         c.export_weights = weights_flag(r, "export");
         if (!r.count("to")) throw InputError("mgpu export: give --to, the file to write (e.g. model.pt)");
         c.export_to = get<std::string>(r, "to");
       }},
  };
  const std::string& name = args[1];
  const std::vector<std::string> rest(args.begin() + 1, args.end());  // rest[0] plays argv[0]
  for (const auto& entry : commands) {
    if (name != entry.name) continue;
    auto options = entry.options();
    const auto r = parse(options, rest);
    if (r.count("help")) {
      cmd.help = options.help();
    } else {
      entry.fill(r, cmd);
    }
    return cmd;
  }
  throw InputError(fmt::format("unknown command '{}' (expected train, plot, bench, models, evaluate, predict, export or help)", name));
}

}  // namespace mgpu::app
