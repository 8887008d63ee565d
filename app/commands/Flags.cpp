// The flag parsing every command shares (app/commands/Flags.h).
#include "app/commands/Flags.h"

#include <fmt/core.h>
#include <torch/cuda.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <tuple>
#include <utility>
#include <cstdlib>

#include "data/InputError.h"  // defines: InputError

namespace mgpu::app {

using data::InputError;

void throw_flag_error(const std::string& flag, const std::string& what) {
  throw InputError(fmt::format("--{}: {}", flag, what));
}

namespace {

// A switch may be written --name=true or --name=false (as cxxopts reads them, and so a user can
// turn off a switch a model's recipe sets); any other value is refused naming the switch.
void check_switch_values(const cxxopts::Options& options, const std::vector<std::string>& args) {
  for (size_t i = 1; i < args.size() && args[i] != "--"; ++i) {
    const auto& a = args[i];
    const auto eq = a.find('=');
    if (a.rfind("--", 0) != 0 || eq == std::string::npos) continue;
    const std::string name = a.substr(2, eq - 2), value = a.substr(eq + 1);
    if (value == "true" || value == "false" || value == "1" || value == "0") continue;
    for (const auto& group : options.groups()) {
      for (const auto& o : options.group_help(group).options) {
        if (o.is_boolean && std::find(o.l.begin(), o.l.end(), name) != o.l.end()) {
          throw InputError(fmt::format(
              "{}: --{}={}: a switch takes no value, or true or false", options.program(), name,
              value));
        }
      }
    }
  }
}

}  // namespace

bool flag_on(const cxxopts::ParseResult& r, const std::string& flag) {
  return r.count(flag) > 0 && get<bool>(r, flag);
}

cxxopts::ParseResult parse(cxxopts::Options& options, const std::vector<std::string>& args) {
  check_switch_values(options, args);
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

int64_t int_at_least(const cxxopts::ParseResult& r, const std::string& flag, int64_t min,
                     int64_t max) {
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

double number_in(const cxxopts::ParseResult& r, const std::string& flag, double min, double max,
                 bool min_excluded, const std::string& expected) {
  const double v = number(r, flag);
  if (!std::isfinite(v) || v < min || (min_excluded && v == min) || v > max) {
    throw InputError(fmt::format("--{} {}: expected {}", flag, v, expected));
  }
  return v;
}

std::string one_of(const cxxopts::ParseResult& r, const std::string& flag,
                   const std::vector<std::string>& choices) {
  const auto word = get<std::string>(r, flag);
  if (std::find(choices.begin(), choices.end(), word) != choices.end()) return word;
  std::string expected = choices.front();
  for (size_t i = 1; i < choices.size(); ++i) {
    expected += (i + 1 == choices.size() ? " or " : ", ") + choices[i];
  }
  throw InputError(fmt::format("--{} '{}': expected {}", flag, word, expected));
}

std::optional<std::vector<int64_t>> int_list(const std::string& text, int64_t min, int64_t max) {
  std::vector<int64_t> list;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || v < min ||
        v > max) {
      return std::nullopt;
    }
    list.push_back(v);
    start = comma + 1;
  }
  return list;
}

std::vector<int64_t> count_list(const cxxopts::ParseResult& r, const std::string& flag) {
  const auto text = get<std::string>(r, flag);
  const auto counts = int_list(text, 1, kMaxReplicas);
  if (!counts) {
    throw InputError(fmt::format(
        "--{} '{}': expected counts from 1 to {} separated by commas, e.g. 1,2,4", flag, text,
        kMaxReplicas));
  }
  return *counts;
}

void add_speed_flags(cxxopts::Options& o) {
  o.add_options("speed")
      ("amp", "mixed precision: off, bf16 or fp16 (forward passes autocast to bfloat16 or "
       "float16; weights, gradients and batch-norm statistics stay float32); fp16 scales the "
       "loss as PyTorch's GradScaler does (from 65536, halved and the step skipped when a "
       "gradient overflows, doubled after 2000 clean steps) and implies --fused-sgd",
       cxxopts::value<std::string>()->default_value("off"))
      ("channels-last", "weights and images in NHWC memory order (faster convolutions on "
       "tensor cores and on CPUs; the default on the CPU)")
      ("no-channels-last", "keep weights and images in NCHW order (the default on a GPU)")
      ("fused-sgd", "SGD with momentum over one flat buffer of all parameters: 3 kernels a step "
       "instead of 3 per tensor")
      ("cuda-graphs", "GPU: capture the whole training step (augmentation, forward, backward, "
       "all-reduce, optimizer) once and replay it; implies --fused-sgd")
      ("no-cudnn-benchmark", "do not let cuDNN time its algorithms for each shape (autotuning "
       "is on unless --deterministic)")
      ("no-tf32", "keep float32 convolutions and matmuls in full float32 (TF32 tensor cores "
       "are allowed by default)")
      ("bucket-mb", "with several replicas: the gradients are summed in buckets of this many MiB, "
       "each started as soon as the backward pass has produced it (the first bucket 1 MiB), as "
       "PyTorch DDP's bucket_cap_mb", cxxopts::value<std::string>()->default_value("25"))
      ("no-overlap", "with several replicas: one all-reduce of all gradients after the backward "
       "pass, instead of buckets overlapping it (the same weights, bit for bit)")
      ("comm-dtype", "with several replicas: the type the gradients are summed in, float32, "
       "bf16 or fp16 (half the bytes on the wire; each bucket cast to it for the all-reduce and "
       "back, as PyTorch DDP's bf16_compress_hook and fp16_compress_hook)",
       cxxopts::value<std::string>()->default_value("float32"));
}

void speed_flags(const cxxopts::ParseResult& r, train::TrainConfig& c) {
  c.amp = get<std::string>(r, "amp");
  if (c.amp != "off" && c.amp != "bf16" && c.amp != "fp16") {
    throw InputError(fmt::format("--amp '{}': expected off, bf16 or fp16", c.amp));
  }
  std::optional<bool> channels_last;  // as given, either way round
  if (r.count("channels-last")) channels_last = flag_on(r, "channels-last");
  if (r.count("no-channels-last")) {
    if (channels_last && *channels_last == flag_on(r, "no-channels-last")) {
      throw InputError("--channels-last and --no-channels-last: give one of them");
    }
    channels_last = !flag_on(r, "no-channels-last");
  }
  c.cuda_graphs = flag_on(r, "cuda-graphs");
  c.fused_sgd = flag_on(r, "fused-sgd") || c.cuda_graphs || c.amp == "fp16";
  // On the CPU the default is the fastest path that changes float32 results only by rounding,
  // measured (docs/benchmarks.md, "Fast defaults"): channels-last. On a GPU the plain path,
  // until the GPU measurements confirm the same choice there.
  c.channels_last = channels_last.value_or(c.gpus == 0);
  c.cudnn_benchmark = !flag_on(r, "no-cudnn-benchmark");
  c.tf32 = !flag_on(r, "no-tf32");
  c.bucket_mb = number(r, "bucket-mb");
  if (!std::isfinite(c.bucket_mb) || c.bucket_mb <= 0 || c.bucket_mb > kMaxBucketMb) {
    throw InputError(fmt::format("--bucket-mb {}: expected MiB > 0 and at most {}", c.bucket_mb,
                                 kMaxBucketMb));
  }
  c.overlap = !flag_on(r, "no-overlap");
  c.comm_dtype = get<std::string>(r, "comm-dtype");
  if (c.comm_dtype != "float32" && c.comm_dtype != "bf16" && c.comm_dtype != "fp16") {
    throw InputError(fmt::format("--comm-dtype '{}': expected float32, bf16 or fp16", c.comm_dtype));
  }
}

void add_weights_flags(cxxopts::Options& o) {
  o.add_options()
      ("weights", "a weights file (a run's model.pt) or a run directory",
       cxxopts::value<std::string>())
      ("gpus", "0: the CPU; 1: the first CUDA GPU; default 1 if a GPU is visible",
       cxxopts::value<std::string>())
      ("threads", "LibTorch CPU threads; 0: all cores", cxxopts::value<std::string>()->default_value("0"))
      ("h,help", "show this help");
}

std::string weights_flag(const cxxopts::ParseResult& r, const std::string& command) {
  if (!r.count("weights")) {
    throw InputError(fmt::format("mgpu {}: give --weights (a run's model.pt or its directory)",
                                 command));
  }
  return get<std::string>(r, "weights");
}

int64_t gpus_flag(const cxxopts::ParseResult& r, int64_t max) {
  if (!r.count("gpus")) return torch::cuda::is_available() ? 1 : 0;
  return int_at_least(r, "gpus", 0, max);
}

void add_folder_flags(cxxopts::Options& o) {
  o.add_options("image folder (--dataset folder)")
      ("val-split", "with only DIR/CLASS/ folders: the fraction of each class held out for "
       "testing (the same images every run)", cxxopts::value<std::string>()->default_value("0"))
      ("image-size", "HxW (or N for NxN) every image is resized to; default the first image's "
       "size", cxxopts::value<std::string>())
      ("skip-bad-images", "warn about (and count) image files that cannot be decoded instead "
       "of stopping");
}

namespace {

constexpr int64_t kMaxImageSide = 4096;

// --image-size "HxW" or "N".
std::pair<int64_t, int64_t> image_size(const std::string& text) {
  const auto sides = int_list(text.find('x') == std::string::npos
                                  ? text + "," + text
                                  : text.substr(0, text.find('x')) + "," +
                                        text.substr(text.find('x') + 1),
                              1, kMaxImageSide);
  if (!sides || sides->size() != 2) {
    throw_flag_error("image-size", fmt::format("'{}' is not HxW or N with sides from 1 to {} "
                                               "(for example 64x64)",
                                               text, kMaxImageSide));
  }
  return {(*sides)[0], (*sides)[1]};
}

}  // namespace

data::DataConfig data_flags(const cxxopts::ParseResult& r) {
  data::DataConfig d;
  d.dataset = get<std::string>(r, "dataset");
  if (d.dataset != "cifar10" && d.dataset != "cifar100" && d.dataset != "fashion-mnist" &&
      d.dataset != "folder" && d.dataset != "auto") {
    throw InputError(fmt::format(
        "--dataset '{}': expected cifar10, cifar100, fashion-mnist, folder or auto", d.dataset));
  }
  d.labels = get<std::string>(r, "labels");
  if (d.labels != "fine" && d.labels != "coarse") {
    throw InputError(fmt::format("--labels '{}': expected fine or coarse", d.labels));
  }
  if (r.count("labels") && d.dataset != "cifar100") {
    throw InputError(fmt::format("--labels is for --dataset cifar100, not {}{}", d.dataset,
                                 d.dataset == "auto" ? " (give --dataset cifar100 with it)" : ""));
  }
  for (const char* flag : {"val-split", "image-size", "skip-bad-images"}) {
    if (r.count(flag) && d.dataset != "folder") {
      throw InputError(fmt::format("--{} is for --dataset folder, not {}", flag, d.dataset));
    }
  }
  d.val_split = number(r, "val-split");
  if (!(d.val_split >= 0 && d.val_split < 1)) {
    throw_flag_error("val-split", fmt::format("{} is not a fraction in [0, 1)", d.val_split));
  }
  if (r.count("image-size")) {
    std::tie(d.image_height, d.image_width) = image_size(get<std::string>(r, "image-size"));
  }
  d.skip_bad_images = flag_on(r, "skip-bad-images");
  d.data_dir = get<std::string>(r, "data-dir");
  d.download = !flag_on(r, "no-download");
  d.limit_test = int_at_least(r, "limit-test", 0);
  return d;
}

}  // namespace mgpu::app
