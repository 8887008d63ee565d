// mgpu compare: reads run directories, prints one table, writes compare.csv and compare.png.
#include "app/commands/Compare.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "app/commands/Command.h"    // defines: CommandSpec, make_command
#include "app/commands/Flags.h"      // defines: get
#include "data/InputError.h"         // defines: InputError
#include "data/ReadFile.h"           // defines: read_file
#include "train/files/AtomicFile.h"  // defines: write_text_atomically, NewDirectories
#include "train/report/Plot.h"       // defines: can_plot, plot_runs

namespace mgpu::app {

using namespace mgpu::train;
using data::InputError;
namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const fs::path& file) {
  const std::string text = data::read_file(file, "run file");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("{}: not JSON as mgpu train writes it ({})", file.string(),
                                 e.what()));
  }
}

// Refuses a run file whose JSON is not of the shape mgpu train writes, naming it and the key.
void check_shape(const nlohmann::json& info, const fs::path& file) {
  auto refuse = [&](const std::string& what) {
    throw InputError(fmt::format("{}: {} (not what mgpu train writes)", file.string(), what));
  };
  if (!info.is_object()) refuse("expected a JSON object");
  if (info.contains("config") && !info["config"].is_object()) refuse("\"config\" is not an object");
  const auto config = info.value("config", nlohmann::json::object());
  for (const char* key : {"replicas", "global_batch", "epochs"}) {
    if (config.contains(key) && !config[key].is_number()) {
      refuse(fmt::format("\"config.{}\" is not a number", key));
    }
  }
  for (const char* key : {"seconds", "processes"}) {
    if (info.contains(key) && !info[key].is_number()) {
      refuse(fmt::format("\"{}\" is not a number", key));
    }
  }
}

double median_seconds(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// A setting as text: "?" where the run does not record it (runs before run.json).
std::string setting(const nlohmann::json& info, const std::string& key) {
  if (!info.contains(key)) return "?";
  const auto& v = info[key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}
std::string config_setting(const nlohmann::json& info, const std::string& key) {
  return setting(info.value("config", nlohmann::json::object()), key);
}

std::string duration(double seconds) {
  if (seconds < 120) return fmt::format("{:.1f}s", seconds);
  const auto whole = static_cast<int64_t>(seconds + 0.5);
  if (whole < 3600) return fmt::format("{}m {:02}s", whole / 60, whole % 60);
  return fmt::format("{}h {:02}m", whole / 3600, whole / 60 % 60);
}

// The settings that differ between runs, "key: a | b | c", besides what the table shows.
std::vector<std::string> differences(const std::vector<RunRecord>& runs) {
  std::map<std::string, std::vector<std::string>> values;  // key -> one value per run
  auto add = [&](size_t i, const std::string& key, const std::string& value) {
    auto& v = values[key];
    v.resize(runs.size(), "?");
    v[i] = value;
  };
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& info = runs[i].info;
    for (const char* key : {"model", "dataset", "train_images", "test_images", "threads"}) {
      add(i, key, setting(info, key));
    }
    const nlohmann::json config = info.value("config", nlohmann::json::object());
    for (const auto& [key, value] : config.items()) {
      if (key == "replicas" || key == "global_batch") continue;  // in the table
      add(i, key, value.is_string() ? value.get<std::string>() : value.dump());
    }
  }
  std::vector<std::string> lines;
  for (auto& [key, v] : values) {
    v.resize(runs.size(), "?");
    if (std::set<std::string>(v.begin(), v.end()).size() > 1) {
      lines.push_back(fmt::format("{}: {}", key, fmt::join(v, " | ")));
    }
  }
  return lines;
}

struct Row {
  std::vector<std::string> cells;
};

void print_table(const std::vector<std::string>& header, const std::vector<Row>& rows,
                 std::ostream& out) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    width[c] = header[c].size();
    for (const auto& r : rows) width[c] = std::max(width[c], r.cells[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < cells.size(); ++c) {
      s += c == 0 ? fmt::format("{:<{}}", cells[c], width[c])
                  : fmt::format("  {:>{}}", cells[c], width[c]);
    }
    out << s << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r.cells);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

RunRecord read_run(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw InputError(fmt::format("{}: no such run directory", dir.string()));
  }
  RunRecord run;
  run.dir = dir;
  run.finished = fs::exists(dir / "summary.json");
  const bool started = fs::exists(dir / "run.json");
  const bool has_history = fs::exists(dir / "history.csv");
  if (!run.finished && !started && !has_history) {
    throw InputError(fmt::format(
        "{} is not a run directory: it has no summary.json, run.json or history.csv (the "
        "files mgpu train writes in its --out-dir)",
        dir.string()));
  }
  if (run.finished || started) {
    const fs::path file = dir / (run.finished ? "summary.json" : "run.json");
    run.info = read_json(file);
    check_shape(run.info, file);
  }
  if (has_history) run.history = read_history_csv(dir / "history.csv");
  std::vector<double> seconds;
  for (const auto& e : run.history) seconds.push_back(e.seconds);
  run.median_epoch_seconds = median_seconds(seconds);
  for (double s : seconds) run.wall_seconds += s;
  if (run.finished && run.info.contains("seconds")) {
    run.wall_seconds = run.info["seconds"].get<double>();
  }
  return run;
}

namespace {

// What the table says of a run beside the first one.
struct Figures {
  double final_acc = 0, best_acc = 0;
  bool timed = false;  // both runs have an epoch
  double speedup = 0, efficiency = 0;
};

double replicas_of(const RunRecord& run) {
  return run.info.value("config", nlohmann::json::object()).value("replicas", 1.0);
}

Figures figures(const RunRecord& run, const RunRecord& first) {
  Figures f;
  for (const auto& e : run.history) f.best_acc = std::max(f.best_acc, e.val_acc);
  if (!run.history.empty()) f.final_acc = run.history.back().val_acc;
  f.timed = run.median_epoch_seconds > 0 && first.median_epoch_seconds > 0;
  if (f.timed) {
    f.speedup = first.median_epoch_seconds / run.median_epoch_seconds;
    f.efficiency = f.speedup / (replicas_of(run) / replicas_of(first));
  }
  return f;
}

// A run still training (or stopped before its end), and runs of different data sets or models.
void print_notes(const std::vector<RunRecord>& runs, std::ostream& out) {
  for (const auto& run : runs) {
    if (run.finished) continue;
    out << fmt::format(
        "note: {} has no summary.json: it is still training, or stopped before its end; "
        "comparing its {} epoch(s) of {} so far\n",
        run.dir.string(), run.history.size(), config_setting(run.info, "epochs"));
  }
  for (const char* key : {"dataset", "model"}) {
    std::vector<std::string> each;
    for (const auto& run : runs) each.push_back(setting(run.info, key));
    if (std::set<std::string>(each.begin(), each.end()).size() > 1) {
      out << fmt::format("note: the runs train different {}s ({}): compared as they are\n", key,
                         fmt::join(each, ", "));
    }
  }
}

void print_comparison(const std::vector<RunRecord>& runs, std::ostream& out) {
  const std::vector<std::string> header = {
      "run", "device", "replicas", "processes", "global batch", "epochs", "s/epoch (median)",
      "wall time", "final val_acc", "best val_acc", "speedup", "efficiency"};
  std::vector<Row> rows;
  for (const auto& run : runs) {
    const Figures f = figures(run, runs.front());
    const size_t epochs = run.history.size();
    const bool none = epochs == 0;
    rows.push_back({{run.dir.string(), setting(run.info, "device"),
                     config_setting(run.info, "replicas"), setting(run.info, "processes"),
                     config_setting(run.info, "global_batch"),
                     run.finished ? fmt::format("{}", epochs) : fmt::format("{} so far", epochs),
                     none ? "-" : fmt::format("{:.2f}", run.median_epoch_seconds),
                     none ? "-" : duration(run.wall_seconds),
                     none ? "-" : fmt::format("{:.4f}", f.final_acc),
                     none ? "-" : fmt::format("{:.4f}", f.best_acc),
                     f.timed ? fmt::format("{:.2f}x", f.speedup) : "-",
                     f.timed ? fmt::format("{:.0f}%", 100 * f.efficiency) : "-"}});
  }
  print_table(header, rows, out);
  const auto differ = differences(runs);
  if (differ.empty()) {
    out << "recipes: the same in every setting\n";
  } else {
    out << "recipes differ in:\n";
    for (const auto& d : differ) out << "  " << d << "\n";
  }
  out << "speedup: the first run's median seconds per epoch over each run's; efficiency: speedup "
         "over the ratio of replicas\n";
}

std::string comparison_csv(const std::vector<RunRecord>& runs) {
  std::string csv =
      "run,device,replicas,processes,global_batch,epochs,median_epoch_seconds,wall_seconds,"
      "final_val_acc,best_val_acc,speedup,efficiency,finished\n";
  for (const auto& run : runs) {
    const Figures f = figures(run, runs.front());
    // A run without epochs (or beside a first run without them) leaves its figures blank.
    const bool none = run.history.empty();
    auto figure = [](bool blank, const std::string& text) { return blank ? std::string() : text; };
    csv += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{}\n", csv_field(run.dir.string()),
                       csv_field(setting(run.info, "device")), config_setting(run.info, "replicas"),
                       setting(run.info, "processes"), config_setting(run.info, "global_batch"),
                       run.history.size(),
                       figure(none, fmt::format("{:.4f}", run.median_epoch_seconds)),
                       figure(none, fmt::format("{:.3f}", run.wall_seconds)),
                       figure(none, fmt::format("{:.6f}", f.final_acc)),
                       figure(none, fmt::format("{:.6f}", f.best_acc)),
                       figure(!f.timed, fmt::format("{:.4f}", f.speedup)),
                       figure(!f.timed, fmt::format("{:.4f}", f.efficiency)),
                       run.finished ? "yes" : "no");
  }
  return csv;
}

// compare.png, or the line saying why there is none.
void plot_comparison(const std::vector<RunRecord>& runs, const fs::path& png, std::ostream& out) {
  std::vector<NamedHistory> curves;
  for (const auto& run : runs) {
    if (!run.history.empty()) curves.push_back({run.dir.string(), run.history});
  }
  std::string why;
  if (curves.empty()) {
    out << "no plot: no run has finished an epoch yet\n";
  } else if (!can_plot(&why)) {
    out << "no plot: " << why << "\n";
  } else {
    plot_runs(curves, png, "mgpu compare");
    out << "plot: " << png.string() << "\n";
  }
}

}  // namespace

void compare_runs(const CompareConfig& config, std::ostream& out) {
  const fs::path csv = config.out_dir / "compare.csv", png = config.out_dir / "compare.png";
  check_output_file(csv, "--out-dir", "compare.csv");
  check_output_file(png, "--out-dir", "compare.png");
  NewDirectories created;  // a refusal or failure leaves no directory it made behind
  created.prepare(config.out_dir, "--out-dir");
  std::vector<RunRecord> runs;
  for (const auto& dir : config.runs) runs.push_back(read_run(dir));
  print_notes(runs, out);
  print_comparison(runs, out);
  write_text_atomically(csv, comparison_csv(runs));
  out << "table: " << csv.string() << "\n";
  plot_comparison(runs, png, out);
}

namespace {

cxxopts::Options compare_options() {
  cxxopts::Options o("mgpu compare",
                     "Compare runs of mgpu train: devices, batch, recipe, time, accuracy, speedup.");
  o.positional_help("RUN RUN ...");
  o.add_options()
      ("runs", "run directories (each an --out-dir of mgpu train)",
       cxxopts::value<std::vector<std::string>>())
      ("out-dir", "where to write compare.csv and compare.png",
       cxxopts::value<std::string>()->default_value("."))
      ("h,help", "show this help");
  o.parse_positional({"runs"});
  return o;
}

}  // namespace

CommandSpec compare_command() {
  return {"compare",
          "  mgpu compare RUN RUN ... [--out-dir DIR] compare runs: time per epoch, accuracy, speedup; "
          "compare.csv and .png\n",
          compare_options, [](const cxxopts::ParseResult& r) {
            if (!r.count("runs")) {
              throw InputError("mgpu compare: name the run directories to compare (mgpu train's "
                               "--out-dir of each)");
            }
            CompareConfig config;
            for (const auto& run : r["runs"].as<std::vector<std::string>>()) {
              config.runs.emplace_back(run);
            }
            config.out_dir = get<std::string>(r, "out-dir");
            return make_command("compare", config, compare_runs);
          }};
}

}  // namespace mgpu::app
