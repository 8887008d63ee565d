// Helpers of the tests that run `mgpu train` as processes on a tiny CIFAR-10: start one or two
// ranks in the background, wait for a checkpoint or an exit code, compare histories and weights.
#pragma once

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>

#include "Fixtures.h"
#include "train/files/Checkpoint.h"
#include "train/files/Weights.h"

extern char** environ;

namespace mgpu::testing::process {

// `mgpu train` on a tiny CIFAR-10 (200 training images, 13 steps of 16 per epoch), started in
// the background; its output goes to log.
// env: variables for it ("RANK=1 WORLD_SIZE=2 ..."); a flag in extra overrides the one before.
inline pid_t start_training(const std::filesystem::path& data, const std::filesystem::path& out,
                            const std::filesystem::path& log, const std::string& extra = "",
                            const std::string& env = "") {
  const std::string cmd = fmt::format(
      "exec env {} {} train --gpus 0 --threads 1 --dataset cifar10 --data-dir {} --epochs 2 "
      "--batch-per-device 16 --verbose 2 --checkpoint-every 5 --out-dir {} {} > {} 2>&1",
      env, mgpu::testing::kMgpuBinary, data.string(), out.string(), extra, log.string());
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  return pid;
}

inline int wait_exit_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline std::string csv_without_seconds(const std::filesystem::path& csv) {
  std::istringstream in(read_text(csv));
  std::string out, line;
  while (std::getline(in, line)) {  // epoch,lr,seconds,... : drop the third field
    const auto a = line.find(',', line.find(',') + 1), b = line.find(',', a + 1);
    out += line.substr(0, a + 1) + line.substr(b + 1) + "\n";
  }
  return out;
}

// Waits (up to 60 s) for the run's first checkpoint: by then it handles signals.
inline void wait_for_first_checkpoint(const std::filesystem::path& out) {
  for (int i = 0; i < 1200 && !mgpu::train::latest_checkpoint(out / "checkpoints"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// start_training into dir/run (log: dir/log), back once its first checkpoint is written.
inline pid_t start_and_wait_for_first_checkpoint(const std::filesystem::path& data,
                                                 const std::filesystem::path& dir) {
  const pid_t pid = start_training(data, dir / "run", dir / "log");
  wait_for_first_checkpoint(dir / "run");
  return pid;
}

inline bool same_model_files(const std::filesystem::path& a, const std::filesystem::path& b) {
  const auto x = mgpu::train::load_weights(a, torch::kCPU),
             y = mgpu::train::load_weights(b, torch::kCPU);
  return mgpu::testing::same_weights(*x.module.ptr(), *y.module.ptr());
}

// Two processes under torchrun's variables, one replica each, both with --out-dir out (only
// rank 0 writes there); logs log0 and log1 in dir.
inline std::array<pid_t, 2> start_two_ranks(const std::filesystem::path& data,
                                            const std::filesystem::path& out,
                                            const std::filesystem::path& dir,
                                            const std::string& extra) {
  const std::string env =
      fmt::format("WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={}", mgpu::testing::free_port());
  const std::string flags =
      "--limit-train 128 --limit-test 32 --batch-per-device 8 "
      "--checkpoint-every 3 --comm-timeout 60 " +
      extra;
  std::array<pid_t, 2> pids{};
  for (int rank : {0, 1}) {
    pids[rank] = start_training(data, out, dir / fmt::format("log{}", rank), flags,
                                fmt::format("RANK={} {}", rank, env));
  }
  return pids;
}

}  // namespace mgpu::testing::process
