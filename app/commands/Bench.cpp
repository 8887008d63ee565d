// The benchmark: one fresh model and trainer per configuration, warm-up, then timed steps.
#include "app/commands/Bench.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iostream>
#include <set>

#include <unistd.h>

#include "app/commands/BenchTiming.h"  // defines: time_steps, time_all_reduce, median, ...
#include "app/commands/Command.h"  // defines: CommandSpec, make_command
#include "app/commands/Flags.h"    // defines: get, int_at_least, ...
#include "data/InputError.h"      // defines: InputError
#include "data/Preprocess.h"      // defines: mean_image
#include "models/Registry.h"       // defines: make_model, count_parameters
#include "train/Device.h"         // defines: select_devices, describe_device, set_threads, configure_kernels
#include "train/files/AtomicFile.h"     // defines: write_text_atomically, NewDirectories
#include "train/comm/SimulatedLink.h"  // defines: behind_link_from_env, simulated_link_from_env
#include "train/report/Plot.h"           // defines: can_plot, plot_bars, plot_timeline
#include "train/Trainer.h"        // defines: Trainer

namespace mgpu::app {

using namespace mgpu::train;  // a command is built from the training library's parts
using data::InputError;
namespace fs = std::filesystem;

namespace {

constexpr double kCifarTrainImages = 50000;

std::string bench_dir(const BenchConfig& config) {
  if (!config.out_dir.empty()) return config.out_dir;
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", std::localtime(&now));
  return std::string("runs/bench-") + text;
}

}  // namespace

const std::vector<std::string>& all_bench_levels() {
  static const std::vector<std::string> levels{"fp32", "channels-last", "bf16", "fused-sgd",
                                               "cuda-graphs"};
  return levels;
}

std::vector<std::string> bench_levels(const std::string& text, bool gpus) {
  const auto& all = all_bench_levels();
  std::vector<bool> chosen(all.size(), text == "all");
  if (text == "all" && !gpus) chosen.back() = false;
  for (size_t start = 0; text != "all" && start <= text.size();) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string name = text.substr(start, comma - start);
    const auto it = std::find(all.begin(), all.end(), name);
    if (it == all.end()) {
      throw data::InputError(fmt::format("--levels: unknown level '{}' (expected all, or some of "
                                         "fp32, channels-last, bf16, fused-sgd, cuda-graphs)",
                                         name));
    }
    if (name == "cuda-graphs" && !gpus) {
      throw data::InputError("--levels cuda-graphs needs GPUs (mgpu bench --gpus N)");
    }
    chosen[static_cast<size_t>(it - all.begin())] = true;
    start = comma + 1;
  }
  std::vector<std::string> levels;
  for (size_t i = 0; i < all.size(); ++i) {
    if (chosen[i]) levels.push_back(all[i]);
  }
  return levels;
}

TrainConfig at_level(TrainConfig config, const std::string& level) {
  const auto& all = all_bench_levels();
  const auto rank = std::find(all.begin(), all.end(), level) - all.begin();
  TORCH_CHECK(rank < static_cast<int64_t>(all.size()), "unknown bench level ", level);
  config.channels_last = rank >= 1;
  config.amp = rank >= 2 ? "bf16" : "off";
  config.fused_sgd = rank >= 3;
  config.cuda_graphs = rank >= 4;
  return config;
}

int64_t warmup_steps(const TrainConfig& train, int64_t asked) {
  return train.cuda_graphs ? std::max(asked, kEagerStepsBeforeCapture + 2) : asked;
}

namespace {

// On a terminal, a transient line saying what bench is timing, erased before the row it leads
// to is printed; nothing when the output is not a terminal (a log keeps only the table).
class StatusLine {
 public:
  explicit StatusLine(std::ostream& out)
      : out_(out), on_(&out == &std::cout && isatty(STDOUT_FILENO)) {}
  void say(const std::string& text) {
    if (!on_) return;
    clear();
    out_ << text << std::flush;
    shown_ = text.size();
  }
  void clear() {
    if (on_ && shown_ > 0) out_ << '\r' << std::string(shown_, ' ') << '\r' << std::flush;
    shown_ = 0;
  }

 private:
  std::ostream& out_;
  bool on_;
  size_t shown_ = 0;
};

}  // namespace

namespace {

// Synthetic CIFAR-sized data: speed does not depend on what the pixels show.
struct BenchData {
  data::Dataset images;
  torch::Tensor mean;
};

BenchData synthetic_data(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  BenchData d{{torch::randint(0, 256, {4096, 3, 32, 32}, gen, torch::kUInt8),
               torch::randint(0, 10, {4096}, gen, torch::kInt64)},
              {}};
  d.mean = data::mean_image(d.images.images);
  return d;
}

void print_header(const BenchConfig& config, const torch::Device& device, int64_t threads,
                  double train_flops, std::ostream& out) {
  const std::string kernels =
      config.gpus ? fmt::format("; cuDNN autotuning {}, TF32 {}",
                                config.train.cudnn_benchmark ? "on" : "off",
                                config.train.tf32 ? "on" : "off")
                  : "";
  // With CUDA graphs the capture is part of the warm-up, never timed (warmup_steps).
  const bool graphs = config.train.cuda_graphs ||
                      std::count(config.levels.begin(), config.levels.end(), "cuda-graphs") > 0;
  const int64_t graph_steps = warmup_steps(at_level(config.train, "cuda-graphs"), config.warmup);
  const std::string graph_warmup =
      graphs && graph_steps > config.warmup
          ? fmt::format(" ({} with CUDA graphs: {} eager, the capture, one replay)", graph_steps,
                        kEagerStepsBeforeCapture)
          : "";
  out << fmt::format("mgpu bench: {}, 3x32x32, batch {} per replica, {} timed steps "
                     "after {} warm-up steps{}; device {}, {} LibTorch threads{}; {:.3f} GFLOP "
                     "per training image (3x the forward pass)\n",
                     config.train.model, config.train.batch_per_device, config.steps, config.warmup,
                     graph_warmup, describe_device(device), threads, kernels, train_flops / 1e9);
  out << fmt::format("{:<14} {:>8} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>6} {:>9} {:>10}\n",
                     "level", "replicas", "batch", "ms/step", "images/s", "s/epoch", "TFLOP/s",
                     "peak MiB", "x", "scaling", "allreduce")
      << std::flush;
}

// With several replicas and overlap on: the same steps with --no-overlap, the share of the
// all-reduce the overlap hid, and the timeline of one step of each (a CSV, and under
// MGPU_SIM_LINK a chart); the files go into notes.
void measure_overlap(BenchRow& row, const TrainConfig& train,
                     const std::vector<torch::Device>& devices, const BenchData& data,
                     const BenchConfig& config, const Timing& timing, const fs::path& dir,
                     std::vector<std::string>& notes, StatusLine& status) {
  status.say("timing the same steps with --no-overlap (one all-reduce after the backward "
             "pass)...");
  TrainConfig serial = train;
  serial.overlap = false;
  const Timing without = time_steps(serial, devices, data.images, data.mean, config);
  row.no_overlap_ms = median(without.steps.step_ms);
  row.hidden = (row.no_overlap_ms - row.median_step_ms) / row.all_reduce_ms;
  const fs::path csv = dir / fmt::format("timeline-{}.csv", row.replicas);
  write_text_atomically(csv, timeline_csv({{"overlap", timing.steps.communication},
                                           {"no-overlap", without.steps.communication}}));
  notes.push_back("timeline: " + csv.string());
  std::string no_chart;
  if (const auto link = simulated_link_from_env(); link && can_plot(&no_chart)) {
    auto spans = timeline_spans(timing.steps.communication, *link, "(overlap)");
    const auto serial_spans = timeline_spans(without.steps.communication, *link, "(--no-overlap)");
    spans.insert(spans.end(), serial_spans.begin(), serial_spans.end());
    const fs::path png = dir / fmt::format("timeline-{}.png", row.replicas);
    plot_timeline(spans, png,
                  fmt::format("{}, {} replicas: the last timed step of replica 0 (link {} "
                              "GB/s + {} us)",
                              train.model, row.replicas, link->gb_per_s, link->latency_us));
    notes.push_back("timeline chart: " + png.string());
  }
}

// One configuration (a replica count at a level): its steps, its figures beside the first
// row's, the all-reduce alone, and with several replicas what the overlap hid.
BenchRow measure(const std::string& level, const std::vector<torch::Device>& devices,
                 const BenchData& data, const BenchConfig& config, double train_flops,
                 const std::vector<BenchRow>& rows, const fs::path& dir,
                 std::vector<std::string>& notes, StatusLine& status) {
  const TrainConfig train = level.empty() ? config.train : at_level(config.train, level);
  const fs::path trace = config.trace && rows.empty() ? dir / "trace.json" : fs::path();
  status.say(fmt::format("timing {} with {} replica(s): {} warm-up and {} timed steps...",
                         level.empty() ? "as flagged" : level, devices.size(),
                         warmup_steps(train, config.warmup), config.steps));
  const Timing timing = time_steps(train, devices, data.images, data.mean, config, trace);
  if (!trace.empty()) notes.push_back("profiler trace: " + trace.string());
  BenchRow row;
  row.level = level;
  row.replicas = static_cast<int64_t>(devices.size());
  row.global_batch = timing.global_batch;
  row.ms_per_step = 1000 * timing.seconds / static_cast<double>(config.steps);
  row.images_per_second = static_cast<double>(config.steps * row.global_batch) / timing.seconds;
  row.seconds_per_epoch = kCifarTrainImages / row.images_per_second;
  row.tflops = row.images_per_second * train_flops / 1e12;
  row.peak_memory_mib = timing.peak_memory_mib;
  const BenchRow& base = rows.empty() ? row : rows.front();
  row.speedup = row.images_per_second / base.images_per_second;
  row.efficiency =
      row.speedup / (static_cast<double>(row.replicas) / static_cast<double>(base.replicas));
  row.gradient_floats = timing.gradient_floats;
  // A row whose training reduces nothing (one replica, no NCCL) shows none: "-" (0 in the
  // CSV), even behind a simulated link.
  if (reduces(train, devices)) {
    status.say("timing the all-reduce of the gradients alone...");
    row.all_reduce_ms =
        time_all_reduce(bench_group(train, devices), devices, row.gradient_floats);
  }
  row.median_step_ms = median(timing.steps.step_ms);
  // A replayed graph's step has no backward pass of the host's, nor a timeline to show.
  row.backward_ms = train.cuda_graphs ? -1 : median(timing.steps.backward_ms);
  if (reduces(train, devices) && train.overlap && !train.cuda_graphs) {  // vs one at the end
    measure_overlap(row, train, devices, data, config, timing, dir, notes, status);
  }
  return row;
}

void print_row(const BenchRow& row, bool reduced, std::ostream& out) {
  out << fmt::format(
             "{:<14} {:>8} {:>7} {:>9.2f} {:>9.1f} {:>8.2f} {:>8.3f} {:>8} {:>5.2f}x {:>9} "
             "{:>9}\n",
             row.level.empty() ? "as flagged" : row.level, row.replicas, row.global_batch,
             row.ms_per_step, row.images_per_second, row.seconds_per_epoch, row.tflops,
             row.peak_memory_mib < 0 ? std::string("-")
                                     : fmt::format("{:.0f}", row.peak_memory_mib),
             row.speedup,
             row.level.empty() ? fmt::format("{:.0f}%", 100 * row.efficiency) : std::string("-"),
             reduced ? fmt::format("{:.3f}ms", row.all_reduce_ms) : std::string("-"))
      << std::flush;
}

std::string bench_csv(const std::vector<BenchRow>& rows) {
  std::string csv = "level,replicas,global_batch,ms_per_step,images_per_second,seconds_per_epoch,"
                    "tflops,peak_memory_mib,speedup,efficiency,gradient_floats,allreduce_ms,"
                    "median_step_ms,backward_ms,no_overlap_ms,hidden\n";
  for (const auto& r : rows) {
    csv += fmt::format(
        "{},{},{},{:.3f},{:.2f},{:.2f},{:.4f},{:.1f},{:.4f},{:.4f},{},{:.4f},{:.3f},{},{:.3f},"
        "{:.4f}\n",
        r.level, r.replicas, r.global_batch, r.ms_per_step, r.images_per_second,
        r.seconds_per_epoch, r.tflops, r.peak_memory_mib, r.speedup, r.efficiency,
        r.gradient_floats, r.all_reduce_ms, r.median_step_ms,
        r.backward_ms < 0 ? std::string() : fmt::format("{:.3f}", r.backward_ms), r.no_overlap_ms,
        r.hidden);
  }
  return csv;
}

// Below the table: the overlap of each multi-replica row, the files, what the columns mean.
void print_notes(const std::vector<BenchRow>& rows, const std::vector<std::string>& notes,
                 int64_t steps, std::ostream& out) {
  for (const auto& r : rows) {
    if (r.no_overlap_ms <= 0) continue;
    // An all-reduce much shorter than the steps' own jitter (a few percent on a busy CPU) hides
    // nothing one could measure.
    const std::string hidden =
        r.all_reduce_ms < 0.05 * r.no_overlap_ms
            ? "the all-reduce is too short beside the step to measure what is hidden"
        : r.hidden <= 0 ? "none of the all-reduce hidden"
                        : fmt::format("{:.0f}% of the all-reduce hidden", 100 * r.hidden);
    out << fmt::format(
        "overlap, {} replicas (replica 0, medians of {} steps): backward {:.2f} ms, all-reduce "
        "{:.2f} ms; step {:.2f} ms overlapped, {:.2f} ms with --no-overlap ({:+.1f}%): {}\n",
        r.replicas, steps, r.backward_ms, r.all_reduce_ms, r.median_step_ms, r.no_overlap_ms,
        100 * (r.median_step_ms / r.no_overlap_ms - 1), hidden);
  }
  for (const auto& note : notes) out << note << "\n";
  out << "s/epoch: projected for 50,000 training images; x: images/s over the first row's; "
         "scaling: x over the replica ratio (not with --levels);\n"
      << fmt::format("allreduce: one sum all-reduce of the full gradient buffer ({} floats, "
                     "{:.1f} MB) with the configuration's communicator, mean of 50 (-: the row "
                     "moves nothing, one replica)\n",
                     rows.front().gradient_floats,
                     4e-6 * static_cast<double>(rows.front().gradient_floats));
}

void draw_chart(const std::vector<BenchRow>& rows, const BenchConfig& config,
                const torch::Device& device, const fs::path& dir, std::ostream& out) {
  std::string why;
  if (!can_plot(&why)) {
    std::cerr << "warning: no chart will be drawn: " << why << "\n";
    return;
  }
  std::vector<Bar> bars;
  for (const auto& r : rows) {
    const std::string label = r.level.empty() ? std::to_string(r.replicas)
                              : r.replicas == 1 ? r.level
                                                : fmt::format("{} x {}", r.replicas, r.level);
    bars.push_back({label, r.images_per_second, fmt::format("{:.2f}x", r.speedup)});
  }
  const std::string by = rows.front().level.empty() ? "replicas" : "configuration";
  plot_bars(bars, by, "images/s", dir / "bench.png",
            fmt::format("Training throughput by {}\n{} x {}", by,
                        config.gpus ? "GPU" : "CPU replica", describe_device(device)));
  out << "chart: " << (dir / "bench.png").string() << "\n";
}

}  // namespace

std::vector<BenchRow> run_bench(const BenchConfig& config, std::ostream& out) {
  // Refuse what this machine cannot run before spending time on the rest.
  std::vector<std::vector<torch::Device>> device_sets;
  for (int64_t n : config.replicas) {
    device_sets.push_back(config.gpus ? select_devices(n, 1) : select_devices(0, n));
  }
  simulated_link_from_env();  // a malformed MGPU_SIM_LINK is refused before anything runs
  const int64_t threads = set_threads(config.train.threads);
  configure_kernels(config.train);
  const fs::path dir = bench_dir(config);
  NewDirectories created;  // a refusal or failure leaves no directory it made behind
  created.prepare(dir, "--out-dir");

  const BenchData data = synthetic_data(config.train.seed);
  auto probe = models::make_model(config.train.model, models::ModelShape{});
  const double train_flops = 3 * models::forward_flops(probe, models::ModelShape{});
  print_header(config, device_sets[0][0], threads, train_flops, out);
  std::vector<std::string> levels = config.levels;
  if (levels.empty()) levels.push_back("");
  std::vector<BenchRow> rows;
  std::vector<std::string> notes;  // the files of the overlap's measurement, listed after the table
  StatusLine status(out);
  for (const auto& devices : device_sets) {
    for (const auto& level : levels) {
      rows.push_back(measure(level, devices, data, config, train_flops, rows, dir, notes, status));
      status.clear();
      const TrainConfig train = level.empty() ? config.train : at_level(config.train, level);
      print_row(rows.back(), reduces(train, devices), out);
    }
  }
  print_notes(rows, notes, config.steps, out);
  write_text_atomically(dir / "bench.csv", bench_csv(rows));
  out << "table: " << (dir / "bench.csv").string() << "\n";
  draw_chart(rows, config, device_sets[0][0], dir, out);
  return rows;
}

namespace {

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
      ("trace", "GPU: write a profiler trace (Chrome JSON, with the GPU's kernels on every "
       "stream) of the first configuration's timed steps to OUT-DIR/trace.json")
      ("out-dir", "where bench.csv and bench.png go (and with several replicas timeline-N.csv, "
       "under MGPU_SIM_LINK timeline-N.png; with --trace trace.json); default "
       "runs/bench-<time>",
       cxxopts::value<std::string>()->default_value(""))
      ("h,help", "show this help");
  add_speed_flags(o);
  return o;
}

BenchConfig parse_bench(const cxxopts::ParseResult& r) {
  BenchConfig c;
  if (r.count("gpus") && r.count("cpu-replicas")) {
    throw InputError("mgpu bench: give --gpus or --cpu-replicas, not both");
  }
  c.gpus = r.count("gpus") > 0;
  if (r.count("levels")) c.levels = bench_levels(get<std::string>(r, "levels"), c.gpus);
  c.replicas = c.gpus ? count_list(r, "gpus")
                      : r.count("cpu-replicas") ? count_list(r, "cpu-replicas")
                      : c.levels.empty() ? std::vector<int64_t>{1, 2}
                                         : std::vector<int64_t>{1};
  c.train.model = models::find_model(get<std::string>(r, "model")).name;
  c.train.gpus = c.gpus ? 1 : 0;  // channels-last's default depends on the device
  speed_flags(r, c.train);
  if (c.train.cuda_graphs && !c.gpus) {
    throw InputError("--cuda-graphs needs GPUs (mgpu bench --gpus N): CPU training has no CUDA graphs");
  }
  c.steps = int_at_least(r, "steps", 1);
  c.warmup = int_at_least(r, "warmup", 0);
  c.train.batch_per_device = int_at_least(r, "batch-per-device", 1, kMaxBatch);
  c.train.threads = int_at_least(r, "threads", 0, kMaxThreads);
  c.train.comm = get<std::string>(r, "comm");
  if (c.train.comm != "auto" && c.train.comm != "local" && c.train.comm != "nccl") {
    throw InputError(fmt::format("--comm '{}': expected auto, local or nccl", c.train.comm));
  }
  if (c.train.comm == "nccl" && !c.gpus) {
    throw InputError("--comm nccl needs GPUs (mgpu bench --gpus N): CPU replicas use local");
  }
  c.out_dir = get<std::string>(r, "out-dir");
  c.trace = flag_on(r, "trace");
  if (c.trace && !c.gpus) {
    throw InputError("--trace records the GPU's kernels (mgpu bench --gpus N --trace); on the "
                     "CPU the profiler sees only one replica's thread");
  }
  return c;
}

}  // namespace

CommandSpec bench_command() {
  return {"bench",
          "  mgpu bench --gpus 1,2,4              compare steady-state step times of replica counts\n"
          "  mgpu bench --cpu-replicas 1,2        the same with replicas on the CPU\n"
          "  mgpu bench --gpus 1 --levels all     time each speed-up (channels-last, bf16, fused SGD,\n"
          "                                       CUDA graphs) on its own, one above the other\n",
          bench_options, [](const cxxopts::ParseResult& r) {
            return make_command("bench", parse_bench(r), [](const BenchConfig& c, std::ostream& out) {
              run_bench(c, out);
            });
          }};
}

}  // namespace mgpu::app
