// Checkpoint files: their names, the newest one, pruning, and what a resumed run must match.
// Which state goes inside one is the Trainer's business (Trainer::write_checkpoint,
// Trainer::resume); the pieces that are not are here.
#pragma once

#include <torch/torch.h>

#include <chrono>
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
  // When this part of the run began: a checkpoint keeps the wall time of the parts so far.
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
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
/// difference: "epochs: the checkpoint has 70, this run 10". A key on one side only is a
/// setting left at its default on the other.
std::string fingerprint_difference(const std::string& checkpoint, const std::string& run);

/// The number under key in a fingerprint, if it has one (checkpoints before lr_changes kept
/// their learning rate there).
std::optional<double> fingerprint_number(const std::string& fingerprint, const std::string& key);

/// The mark save_archive gives a checkpoint (train/Archive.h).
inline const char* kCheckpointFormat = "mgpu-checkpoint-1";

/// The generators a device's work draws from, as [bytes] uint8 on the CPU: the CPU's (dropout
/// on the CPU, and anything else drawing from the global generator) and, for a GPU, that
/// device's. set_generator_states puts such a tensor back.
torch::Tensor generator_states(const torch::Device& device);
void set_generator_states(const torch::Device& device, const torch::Tensor& states);

/// A generator's state, and setting it, under the generator's lock.
torch::Tensor generator_state(torch::Generator& generator);
void set_generator_state(torch::Generator& generator, const torch::Tensor& state);

}  // namespace mgpu::train
