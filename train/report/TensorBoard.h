// A run's TensorBoard log, laid out as Keras's TensorBoard callback lays it out: RUN/tensorboard/
// train/ and validation/, one event file each, so TensorBoard draws a run's training and
// validation curves on one chart.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "train/report/History.h"

namespace mgpu::train {

/// Where a resumed run continues: epochs completed, and steps (1-based, global over the run)
/// completed.
struct LogPosition {
  int64_t epochs = 0;
  int64_t steps = 0;
};

class TensorBoardLog {
 public:
  /// Opens the log under dir (dir/train, dir/validation). A fresh run (no resumed) removes
  /// earlier event files there. A resumed run starts a new event file per folder (written
  /// atomically) with a session start and the earlier parts' events up to its checkpoint's
  /// position, without the later ones, which the interrupted part wrote and this part trains
  /// again; the earlier files stay, and TensorBoard, reading the files in order, drops what
  /// they showed at the session start, so it shows one line with every step once. Throws
  /// std::runtime_error naming the folder if it cannot be written.
  TensorBoardLog(const std::filesystem::path& dir, std::optional<LogPosition> resumed);

  /// The run's settings as markdown, at the step this part starts from.
  void text(const std::string& tag, const std::string& markdown, int64_t step);
  /// An epoch's figures: train/epoch_{loss,acc,lr,seconds,images_per_second} and
  /// validation/epoch_{loss,acc}, at step stats.epoch (1-based, as printed).
  void epoch(const EpochStats& stats, double images_per_second);
  /// A training step's: train/batch_{loss,lr}, and batch_loss_scale with --amp fp16
  /// (loss_scale > 0), at the global step (1-based).
  void step(int64_t step, double loss, double lr, double loss_scale);

  const std::filesystem::path& dir() const { return dir_; }

 private:
  // One folder's event file, appended a whole record per write(2), so that a run killed
  // mid-write leaves every record before the last whole.
  class Writer {
   public:
    Writer(const std::filesystem::path& folder, std::optional<LogPosition> resumed);
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    void scalar(const std::string& tag, double value, int64_t step);
    void text(const std::string& tag, const std::string& markdown, int64_t step);

   private:
    void append(const std::string& event);
    std::filesystem::path file_;
    int fd_ = -1;
  };

  std::filesystem::path dir_;
  Writer train_, validation_;
};

}  // namespace mgpu::train
