// Checkpoint files: their names, the newest one, pruning, and what a resumed run must match.
// What goes inside one is the Trainer's business (Trainer::write_checkpoint, Trainer::resume).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace mgpu::train {

struct CheckpointPolicy {
  std::filesystem::path dir;  // where checkpoints go; empty: none are written
  int64_t every_steps = 0;    // also every N optimizer steps (0: at the end of each epoch only)
  int64_t keep = 1;           // older checkpoints kept besides the newest
  bool writer = true;         // this process writes them (rank 0 of the job)
  std::string fingerprint;    // JSON object of what a resumed run must match
};

/// dir/ckpt-e0003-s000120.pt: after 3 epochs and 120 steps of the fourth (s000000 at an
/// epoch's end), so that names sort in training order.
std::filesystem::path checkpoint_path(const std::filesystem::path& dir, int64_t epoch,
                                      int64_t step);

/// The newest checkpoint in dir, if any (temporary files of an interrupted write are ignored).
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& dir);

/// Deletes all but the newest keep + 1 checkpoints in dir.
void prune_checkpoints(const std::filesystem::path& dir, int64_t keep);

/// Compares two fingerprints (JSON objects); returns "" if they match, else one line per
/// difference: "epochs: the checkpoint has 70, this run 10".
std::string fingerprint_difference(const std::string& checkpoint, const std::string& run);

}  // namespace mgpu::train
