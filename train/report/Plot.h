// The tutorial's figure: train/test loss and accuracy against epoch, as a PNG via gnuplot.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "train/report/History.h"

namespace mgpu::train {

/// True when this build can plot and a gnuplot executable is on PATH; otherwise false and
/// *why says what is missing.
bool can_plot(std::string* why);

/// Draws the four curves to png (written atomically). Throws std::runtime_error if gnuplot
/// fails; call can_plot first to warn instead when plotting is unavailable.
void plot_history(const History& history, const std::filesystem::path& png,
                  const std::string& subtitle);

/// A run's history with the label its curves take.
struct NamedHistory {
  std::string label;
  History history;
};

/// mgpu compare's figure: val_acc and training loss against the epoch and against wall time
/// (the epochs' seconds added up), one colour a run.
void plot_runs(const std::vector<NamedHistory>& runs, const std::filesystem::path& png,
               const std::string& title);

/// A heat map of a confusion matrix [K, K] int64 (rows: true class, columns: predicted),
/// coloured by each row's fraction and labelled with the counts.
void plot_confusion(const torch::Tensor& confusion, const std::vector<std::string>& class_names,
                    const std::filesystem::path& png, const std::string& subtitle);

/// One bar of a bar chart: its label on the x axis, its height, the note printed above it.
struct Bar {
  std::string label;
  double value = 0;
  std::string note;
};

/// A bar chart (e.g. images/s per configuration, each bar labelled with its speedup).
void plot_bars(const std::vector<Bar>& bars, const std::string& xlabel, const std::string& ylabel,
               const std::filesystem::path& png, const std::string& title);

/// One bar of a timeline: from start to end (ms) in its lane, with a label inside.
struct Span {
  std::string lane;
  double start = 0, end = 0;
  std::string label;
};

/// A timeline: one row per lane (in the order they first appear), each span a box.
void plot_timeline(const std::vector<Span>& spans, const std::filesystem::path& png,
                   const std::string& title);

}  // namespace mgpu::train
