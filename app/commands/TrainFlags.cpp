// mgpu train's flags and their checks.
#include "app/commands/TrainFlags.h"

#include <fmt/core.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <map>

#include "app/commands/Flags.h"        // defines: int_at_least, number, data_flags, kMax...
#include "app/commands/RecipeFlags.h"  // defines: add_recipe_flags, recipe_flags
#include "data/InputError.h"           // defines: InputError
#include "models/Registry.h"           // defines: find_model

namespace mgpu::app {

using namespace mgpu::train;
using data::InputError;

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

namespace {

// --comm and --comm-timeout.
void comm_flags(const cxxopts::ParseResult& r, TrainConfig& c) {
  c.comm = one_of(r, "comm", {"auto", "local", "nccl"});
  c.comm_timeout_s = number_in(r, "comm-timeout", 0, kMaxTimeout, /*min_excluded=*/true,
                               fmt::format("seconds > 0 and at most {} (a week)", kMaxTimeout));
}

// The rate: --lr, --power, --momentum, --lr-scaling, --warmup-epochs (after --epochs).
void rate_flags(const cxxopts::ParseResult& r, TrainConfig& c) {
  const float float_max = std::numeric_limits<float>::max();
  c.lr = number_in(r, "lr", 0, float_max, /*min_excluded=*/true,
                   fmt::format("a number > 0 and at most {} (a float32)", float_max));
  c.power = number_in(r, "power", 0, std::numeric_limits<double>::infinity(), false,
                      "a finite number >= 0");
  c.momentum = number_in(r, "momentum", 0, std::nextafter(1.0, 0.0), false, "a number in [0, 1)");
  c.lr_scaling = one_of(r, "lr-scaling", {"none", "linear"});
  c.warmup_epochs = number_in(r, "warmup-epochs", 0, c.epochs, false,
                              fmt::format("a number from 0 to --epochs ({})", c.epochs));
  if (c.warmup_epochs > 0 && c.lr_scaling != "linear") {
    throw InputError(fmt::format(
        "--warmup-epochs {} needs --lr-scaling linear: the warm-up rises from --lr to the scaled "
        "rate, and without scaling there is nothing to rise to",
        c.warmup_epochs));
  }
}

// What the run shows and keeps: --verbose, --out-dir, --checkpoint-every, --keep, --resume.
void output_flags(const cxxopts::ParseResult& r, TrainConfig& c) {
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
}

}  // namespace

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
  comm_flags(r, c);
  c.threads = int_at_least(r, "threads", 0, kMaxThreads);
  c.seed = static_cast<uint64_t>(int_at_least(r, "seed", 0));
  c.deterministic = flag_on(r, "deterministic");
  speed_flags(r, c);
  if (c.cuda_graphs && c.gpus == 0) {
    throw InputError("--cuda-graphs needs a GPU (--gpus 1 or more): CPU training has no CUDA graphs");
  }
  rate_flags(r, c);
  recipe_flags(r, c);
  output_flags(r, c);
  return c;
}

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

}  // namespace mgpu::app
