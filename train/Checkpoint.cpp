// Checkpoint names, listing and pruning, fingerprint comparison, and the pieces of state
// (generators, per-rank rows, history) a checkpoint holds.
#include "train/Checkpoint.h"

#include <dirent.h>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <regex>
#include <vector>

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {

// Checkpoints in dir, oldest first (their names sort in training order). Listed with POSIX
// calls, not a directory_iterator: see docs/architecture.md on LibTorch's std::filesystem.
std::vector<fs::path> list_checkpoints(const fs::path& dir) {
  static const std::regex kName(R"(ckpt-e\d{4,}-s\d{6,}\.pt)");
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* entry = readdir(d)) {
      if (std::regex_match(entry->d_name, kName)) names.emplace_back(entry->d_name);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::vector<fs::path> paths;
  for (const auto& name : names) paths.push_back(dir / name);
  return paths;
}

}  // namespace

fs::path checkpoint_path(const fs::path& dir, int64_t epoch, int64_t step) {
  return dir / fmt::format("ckpt-e{:04d}-s{:06d}.pt", epoch, step);
}

std::optional<fs::path> latest_checkpoint(const fs::path& dir) {
  const auto all = list_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

void prune_checkpoints(const fs::path& dir, int64_t keep) {
  const auto all = list_checkpoints(dir);
  const auto keep_count = static_cast<size_t>(std::max<int64_t>(0, keep) + 1);
  for (size_t i = 0; i + keep_count < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);  // one left behind costs disk space, not correctness
  }
}

std::string fingerprint_difference(const std::string& checkpoint, const std::string& run) {
  const auto a = nlohmann::json::parse(checkpoint, nullptr, /*allow_exceptions=*/false);
  const auto b = nlohmann::json::parse(run);
  if (!a.is_object()) return "its description of the run cannot be read";
  std::string diff;
  for (const auto& [key, value] : b.items()) {
    const auto there = a.find(key);
    const std::string had = there == a.end() ? "nothing" : there->dump();
    if (there == a.end() || *there != value) {
      diff += fmt::format("{}{}: the checkpoint has {}, this run {}", diff.empty() ? "" : "; ",
                          key, had, value.dump());
    }
  }
  return diff;
}

torch::Tensor generator_states(const torch::Device& device) {
  auto cpu = at::globalContext().defaultGenerator(torch::kCPU);
  std::vector<torch::Tensor> parts;
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    parts.push_back(cpu.get_state());
  }
  if (device.is_cuda()) {
    auto gpu = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gpu.mutex());
    parts.push_back(gpu.get_state());
  }
  return torch::cat(parts);
}

void set_generator_states(const torch::Device& device, const torch::Tensor& states) {
  auto cpu = at::globalContext().defaultGenerator(torch::kCPU);
  std::lock_guard<std::mutex> lock(cpu.mutex());
  const int64_t cpu_bytes = cpu.get_state().numel();
  cpu.set_state(states.narrow(0, 0, cpu_bytes).clone());
  if (device.is_cuda()) {
    auto gpu = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> gpu_lock(gpu.mutex());
    gpu.set_state(states.narrow(0, cpu_bytes, states.numel() - cpu_bytes).clone());
  }
}

torch::Tensor gather_rows(Communicator* comm, const torch::Tensor& row) {
  if (!comm) return row.flatten().unsqueeze(0);
  auto rows = torch::zeros({comm->world_size(), row.numel()}, row.options());
  rows[comm->rank()].copy_(row.flatten());
  comm->all_reduce_sum(rows);
  return rows;
}

torch::Tensor history_tensor(const History& history) {
  auto t = torch::zeros({static_cast<int64_t>(history.size()), 7}, torch::kFloat64);
  for (size_t i = 0; i < history.size(); ++i) {
    const auto& e = history[i];
    const double row[7] = {static_cast<double>(e.epoch), e.lr, e.seconds, e.loss, e.acc,
                           e.val_loss, e.val_acc};
    for (int64_t j = 0; j < 7; ++j) t[static_cast<int64_t>(i)][j] = row[j];
  }
  return t;
}

History history_from_tensor(const torch::Tensor& t) {
  History history;
  const auto rows = t.accessor<double, 2>();
  for (int64_t i = 0; i < t.size(0); ++i) {
    history.push_back({static_cast<int64_t>(rows[i][0]), rows[i][1], rows[i][2], rows[i][3],
                       rows[i][4], rows[i][5], rows[i][6]});
  }
  return history;
}

}  // namespace mgpu::train
