// Plotting through gnuplot-iostream; compiled to a clear refusal when MGPU_WITH_PLOT is off.
#include "train/report/Plot.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <tuple>
#include <vector>

#include "train/files/AtomicFile.h"  // defines: write_atomically

#ifdef MGPU_WITH_PLOT
#include <gnuplot-iostream.h>
#endif

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {

bool gnuplot_on_path() {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream dirs(path);
  std::string dir;
  std::error_code ec;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && fs::is_regular_file(fs::path(dir) / "gnuplot", ec)) return true;
  }
  return false;
}

// A gnuplot double-quoted string: backslash escapes for \\, " and newlines.
[[maybe_unused]] std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else {
      if (c == '\\' || c == '"') out += '\\';
      out += c;
    }
  }
  return out + "\"";
}

#ifdef MGPU_WITH_PLOT
// Runs gnuplot with a PNG terminal aimed at a temporary file, lets draw() send the commands and
// data, waits for gnuplot, and renames the file into place only if gnuplot wrote it.
void draw_png(const fs::path& png, const char* size, const std::string& title,
              const std::function<void(Gnuplot&)>& draw) {
  write_atomically(png, [&](const fs::path& tmp) {
    {
      Gnuplot gp("gnuplot");
      gp << "set terminal pngcairo size " << size << " noenhanced font 'sans,11'\n";
      gp << "set output " << quoted(tmp.string()) << "\n";
      gp << "set title " << quoted(title) << "\n";
      draw(gp);
      gp << "set output\nexit\n";
    }  // closing the pipe waits for gnuplot to finish
    std::error_code ec;
    if (!fs::is_regular_file(tmp, ec) || fs::file_size(tmp, ec) == 0) {
      throw std::runtime_error(fmt::format("gnuplot did not write {}", png.string()));
    }
  });
}
#endif

}  // namespace

bool can_plot(std::string* why) {
#ifndef MGPU_WITH_PLOT
  *why = "this mgpu was built with MGPU_WITH_PLOT=OFF";
  return false;
#else
  if (!gnuplot_on_path()) {
    *why = "gnuplot is not on PATH (Debian: apt-get install gnuplot-nox)";
    return false;
  }
  return true;
#endif
}

void plot_history(const History& history, const fs::path& png, const std::string& subtitle) {
#ifndef MGPU_WITH_PLOT
  (void)history, (void)png, (void)subtitle;
  throw std::runtime_error("cannot plot: this mgpu was built with MGPU_WITH_PLOT=OFF");
#else
  using Point = std::tuple<int64_t, double>;
  std::vector<Point> loss, val_loss, acc, val_acc;
  for (const auto& e : history) {
    loss.emplace_back(e.epoch, e.loss);
    val_loss.emplace_back(e.epoch, e.val_loss);
    acc.emplace_back(e.epoch, e.acc);
    val_acc.emplace_back(e.epoch, e.val_acc);
  }
  draw_png(png, "900,650", "Training Loss and Accuracy\n" + subtitle, [&](Gnuplot& gp) {
    gp << "set xlabel 'Epoch #'\nset ylabel 'Loss/Accuracy'\nset grid\nset key outside right\n";
    gp << "set xrange [0.5:" << history.size() + 0.5 << "]\n";
    gp << "set xtics " << std::max<size_t>(1, history.size() / 10) << "\n";  // whole epochs
    const char* style = history.size() > 1 ? "lines lw 2" : "linespoints pt 7 lw 2";
    gp << "plot '-' with " << style << " title 'train_loss', '-' with " << style
       << " title 'val_loss', '-' with " << style << " title 'train_acc', '-' with " << style
       << " title 'val_acc'\n";
    gp.send1d(loss);
    gp.send1d(val_loss);
    gp.send1d(acc);
    gp.send1d(val_acc);
  });
#endif
}

void plot_runs(const std::vector<NamedHistory>& runs, const fs::path& png,
               const std::string& title) {
#ifndef MGPU_WITH_PLOT
  (void)runs, (void)png, (void)title;
  throw std::runtime_error("cannot plot: this mgpu was built with MGPU_WITH_PLOT=OFF");
#else
  using Point = std::tuple<double, double>;
  struct Curves {
    std::string label;
    std::vector<Point> acc_by_epoch, loss_by_epoch, acc_by_time, loss_by_time;
  };
  std::vector<Curves> curves;
  for (const auto& run : runs) {
    if (run.history.empty()) continue;  // a run with no epoch yet draws nothing
    Curves c{run.label, {}, {}, {}, {}};
    double seconds = 0;
    for (const auto& e : run.history) {
      seconds += e.seconds;
      c.acc_by_epoch.emplace_back(e.epoch, e.val_acc);
      c.loss_by_epoch.emplace_back(e.epoch, e.loss);
      c.acc_by_time.emplace_back(seconds, e.val_acc);
      c.loss_by_time.emplace_back(seconds, e.loss);
    }
    curves.push_back(std::move(c));
  }
  if (curves.empty()) throw std::runtime_error("no run has a finished epoch to plot");
  draw_png(png, "1200,900", title, [&](Gnuplot& gp) {
    gp << "set multiplot layout 2,2 title " << quoted(title) << "\nunset title\nset grid\n";
    auto panel = [&](const char* xlabel, const char* ylabel, auto member) {
      gp << "set xlabel '" << xlabel << "'\nset ylabel '" << ylabel << "'\n";
      gp << "plot ";
      for (size_t i = 0; i < curves.size(); ++i) {
        gp << (i ? ", " : "") << "'-' with linespoints lt " << i + 1 << " pt 7 ps 0.6 lw 2 title "
           << quoted(curves[i].label);
      }
      gp << "\n";
      for (const auto& c : curves) gp.send1d(c.*member);
    };
    size_t epochs = 1;
    for (const auto& c : curves) epochs = std::max(epochs, c.acc_by_epoch.size());
    const std::string by_epoch = fmt::format("set xrange [0.5:{}]\nset xtics {}\n", epochs + 0.5,
                                             std::max<size_t>(1, epochs / 10));
    const std::string by_time = "set xrange [0:*]\nset xtics autofreq\n";
    gp << "set key bottom right\n" << by_epoch;
    panel("Epoch #", "val_acc", &Curves::acc_by_epoch);
    gp << by_time;
    panel("Wall time (s)", "val_acc", &Curves::acc_by_time);
    gp << "set key top right\n" << by_epoch;
    panel("Epoch #", "training loss", &Curves::loss_by_epoch);
    gp << by_time;
    panel("Wall time (s)", "training loss", &Curves::loss_by_time);
    gp << "unset multiplot\n";
  });
#endif
}

void plot_confusion(const torch::Tensor& confusion, const std::vector<std::string>& class_names,
                    const fs::path& png, const std::string& subtitle) {
#ifndef MGPU_WITH_PLOT
  (void)confusion, (void)class_names, (void)png, (void)subtitle;
  throw std::runtime_error("cannot plot: this mgpu was built with MGPU_WITH_PLOT=OFF");
#else
  const auto k = static_cast<int64_t>(class_names.size());
  const auto m = confusion.accessor<int64_t, 2>();
  // One line per cell: column (predicted), row (true), row fraction, count.
  std::vector<std::tuple<int64_t, int64_t, double, int64_t>> cells;
  for (int64_t r = 0; r < k; ++r) {
    int64_t total = 0;
    for (int64_t c = 0; c < k; ++c) total += m[r][c];
    for (int64_t c = 0; c < k; ++c) {
      cells.emplace_back(c, r, total ? static_cast<double>(m[r][c]) / total : 0.0, m[r][c]);
    }
  }
  std::string tics;
  for (int64_t i = 0; i < k; ++i) {
    tics += fmt::format("{}{} {}", i ? ", " : "", quoted(class_names[static_cast<size_t>(i)]), i);
  }
  const int side = static_cast<int>(std::clamp<int64_t>(60 * k + 250, 500, 1600));
  const std::string size = fmt::format("{},{}", side + 100, side);
  draw_png(png, size.c_str(), "Confusion matrix\n" + subtitle, [&](Gnuplot& gp) {
    gp << "set xlabel 'predicted'\nset ylabel 'true'\nunset key\n";
    gp << "set xtics (" << tics << ") rotate by -45\nset ytics (" << tics << ")\n";
    gp << "set xrange [-0.5:" << k - 0.5 << "]\nset yrange [" << k - 0.5 << ":-0.5]\n";
    gp << "set cbrange [0:1]\nset cblabel 'fraction of the true class'\n";
    gp << "set palette defined (0 'white', 1 '#2b6cb0')\n";
    gp << "plot '-' using 1:2:3 with image, '-' using 1:2:(sprintf('%d', $4)) with labels\n";
    gp.send1d(cells);
    gp.send1d(cells);
  });
#endif
}

void plot_bars(const std::vector<Bar>& bars, const std::string& xlabel, const std::string& ylabel,
               const fs::path& png, const std::string& title) {
#ifndef MGPU_WITH_PLOT
  (void)bars, (void)xlabel, (void)ylabel, (void)png, (void)title;
  throw std::runtime_error("cannot plot: this mgpu was built with MGPU_WITH_PLOT=OFF");
#else
  std::vector<std::tuple<std::string, double, std::string>> rows;
  for (const auto& b : bars) rows.emplace_back(b.label, b.value, b.note);
  draw_png(png, "800,550", title, [&](Gnuplot& gp) {
    gp << "set xlabel '" << xlabel << "'\nset ylabel '" << ylabel << "'\nset grid ytics\n";
    gp << "set yrange [0:*]\nset style fill solid 0.6\nset boxwidth 0.6\nunset key\n";
    gp << "set offsets 0,0,graph 0.1,0\n";
    gp << "plot '-' using 0:2:xtic(1) with boxes, '-' using 0:2:3 with labels offset 0,1\n";
    gp.send1d(rows);
    gp.send1d(rows);
  });
#endif
}

void plot_timeline(const std::vector<Span>& spans, const fs::path& png, const std::string& title) {
#ifndef MGPU_WITH_PLOT
  (void)spans, (void)png, (void)title;
  throw std::runtime_error("cannot plot: this mgpu was built with MGPU_WITH_PLOT=OFF");
#else
  std::vector<std::string> lanes;
  std::vector<std::tuple<double, double, double, double, double, std::string>> boxes;
  for (const auto& s : spans) {
    auto it = std::find(lanes.begin(), lanes.end(), s.lane);
    if (it == lanes.end()) it = lanes.insert(lanes.end(), s.lane);
    const double y = static_cast<double>(it - lanes.begin());
    boxes.emplace_back((s.start + s.end) / 2, y, s.start, s.end, y, s.label);
  }
  std::string tics;
  for (size_t i = 0; i < lanes.size(); ++i) {
    const std::string& lane = lanes[i];
    tics += fmt::format("{}{} {}", i ? ", " : "", quoted(lane), i);
  }
  draw_png(png, "1000,420", title, [&](Gnuplot& gp) {
    gp << "set xlabel 'ms since the last backward pass began'\nunset key\nset grid xtics\n";
    gp << "set ytics (" << tics << ")\nset yrange [" << lanes.size() - 0.5 << ":-0.5]\n";
    gp << "set style fill solid 0.5 border -1\n";
    gp << "plot '-' using 1:2:3:4:($5-0.3):($5+0.3) with boxxyerror, "
          "'-' using 1:2:6 with labels font ',8'\n";
    gp.send1d(boxes);
    gp.send1d(boxes);
  });
#endif
}

}  // namespace mgpu::train
