// Checkpoint names, listing and pruning, fingerprint comparison, and the pieces of state
// (generators) a checkpoint holds.
#include "train/files/Checkpoint.h"

#include <dirent.h>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <string_view>
#include <vector>

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {

// Whether name is a checkpoint's: ckpt-e<4 or more digits>-s<6 or more digits>.pt (std::regex
// would do, but GCC 12 warns of its own headers wherever it is used).
bool is_checkpoint_name(std::string_view name) {
  const auto digits = [&name](size_t at_least) {
    size_t n = 0;
    while (n < name.size() && std::isdigit(static_cast<unsigned char>(name[n]))) ++n;
    name.remove_prefix(n);
    return n >= at_least;
  };
  const auto literal = [&name](std::string_view text) {
    if (name.substr(0, text.size()) != text) return false;
    name.remove_prefix(text.size());
    return true;
  };
  return literal("ckpt-e") && digits(4) && literal("-s") && digits(6) && literal(".pt") &&
         name.empty();
}

// Checkpoints in dir, oldest first (their names sort in training order). Listed with POSIX
// calls, not a directory_iterator: see docs/architecture.md on LibTorch's std::filesystem.
std::vector<fs::path> list_checkpoints(const fs::path& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* entry = readdir(d)) {
      if (is_checkpoint_name(entry->d_name)) names.emplace_back(entry->d_name);
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
  // A key on one side only is a setting left at its default there (the recipe's settings are
  // recorded only when they differ from the tutorial's).
  std::string diff;
  auto add = [&](const std::string& key, const std::string& had, const std::string& has) {
    diff += fmt::format("{}{}: the checkpoint has {}, this run {}", diff.empty() ? "" : "; ", key,
                        had, has);
  };
  for (const auto& [key, value] : b.items()) {
    const auto there = a.find(key);
    if (there == a.end()) {
      add(key, "the default", value.dump());
    } else if (*there != value) {
      add(key, there->dump(), value.dump());
    }
  }
  for (const auto& [key, value] : a.items()) {
    // Older checkpoints kept the rate here; Trainer::resume compares it (it may be lowered).
    if (!b.contains(key) && key != "lr") add(key, value.dump(), "the default");
  }
  return diff;
}

std::optional<double> fingerprint_number(const std::string& fingerprint, const std::string& key) {
  const auto j = nlohmann::json::parse(fingerprint, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return std::nullopt;
  return j[key].get<double>();
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

torch::Tensor generator_state(torch::Generator& generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void set_generator_state(torch::Generator& generator, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

}  // namespace mgpu::train
