// The tutorial's figure: train/test loss and accuracy against epoch, as a PNG via gnuplot.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

#include "train/History.h"

namespace mgpu::train {

/// True when this build can plot and a gnuplot executable is on PATH; otherwise false and
/// *why says what is missing.
bool can_plot(std::string* why);

/// Draws the four curves to png (written atomically). Throws std::runtime_error if gnuplot
/// fails; call can_plot first to warn instead when plotting is unavailable.
void plot_history(const History& history, const std::filesystem::path& png,
                  const std::string& subtitle);

/// A heat map of a confusion matrix [K, K] int64 (rows: true class, columns: predicted),
/// coloured by each row's fraction and labelled with the counts.
void plot_confusion(const torch::Tensor& confusion, const std::vector<std::string>& class_names,
                    const std::filesystem::path& png, const std::string& subtitle);

struct BenchRow;

/// A bar chart of images/s per replica count, labelled with each bar's speedup.
void plot_bench(const std::vector<BenchRow>& rows, const std::filesystem::path& png,
                const std::string& subtitle);

}  // namespace mgpu::train
