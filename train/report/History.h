// Per-epoch metrics, their CSV file, and their tensor form inside checkpoints.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace mgpu::train {

struct EpochStats {
  int64_t epoch = 0;  // 1-based, as printed
  double lr = 0;
  double seconds = 0;  // training and evaluation wall time
  double loss = 0, acc = 0;
  double val_loss = 0, val_acc = 0;
};
using History = std::vector<EpochStats>;

/// CSV with header epoch,lr,seconds,loss,acc,val_loss,val_acc.
std::string history_csv(const History& history);
/// Parses history_csv's format (no epochs is no error); throws data::InputError naming source
/// and the line.
History parse_history_csv(const std::string& text, const std::string& source);
/// Reads a history.csv file holding at least one epoch; throws data::InputError naming it.
History read_history_csv(const std::filesystem::path& file);

}  // namespace mgpu::train
