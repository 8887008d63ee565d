// Per-epoch metrics, their CSV file, and atomic file writes for everything a run leaves.
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

/// Writes via path + ".tmp", fsyncs it, renames it into place and fsyncs the directory, so a
/// reader never sees a half-written file and a failure or crash at any moment leaves the
/// previous version in place. Throws std::runtime_error naming the path.
void write_atomically(const std::filesystem::path& path,
                      const std::function<void(const std::filesystem::path& tmp)>& write);
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

/// Creates dir (and its parents) and proves it writable now, before work that depends on it;
/// throws data::InputError naming flag and dir otherwise.
void prepare_output_dir(const std::filesystem::path& dir, const std::string& flag);

/// CSV with header epoch,lr,seconds,loss,acc,val_loss,val_acc.
std::string history_csv(const History& history);
/// Parses history_csv's format (no epochs is no error); throws data::InputError naming source
/// and the line.
History parse_history_csv(const std::string& text, const std::string& source);
/// Reads a history.csv file holding at least one epoch; throws data::InputError naming it.
History read_history_csv(const std::filesystem::path& file);

}  // namespace mgpu::train
