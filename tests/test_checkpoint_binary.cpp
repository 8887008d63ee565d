// `mgpu train` run as a process: killed at random moments and resumed, stopped by signals
// (early, mid-epoch, twice), resume refusals. Two processes: test_checkpoint_ranks.cpp.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <fstream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "Fixtures.h"
#include "TrainingProcess.h"
#include "train/Signals.h"
#include "train/files/Checkpoint.h"
#include "train/files/Weights.h"

using namespace mgpu;
using mgpu::testing::same_weights;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;

using namespace mgpu::testing::process;
using mgpu::testing::read_text;

TEST(CheckpointBinary, KilledAtRandomMomentsAndResumedItEndsAsAnUninterruptedRun) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  ASSERT_EQ(wait_exit_code(start_training(data, tmp.path() / "whole", tmp.path() / "whole.log")), 0)
      << read_text(tmp.path() / "whole.log");

  // Three kills at random moments (a run that ends first is simply not killed), then a
  // resume that runs to the end.
  std::mt19937 pick(std::random_device{}());
  std::uniform_int_distribution<int> delay_ms(1000, 3500);
  int kills = 0;
  for (int attempt = 0; attempt <= 3; ++attempt) {
    const pid_t pid = start_training(data, tmp.path() / "parts",
                                     tmp.path() / fmt::format("part{}.log", attempt),
                                     attempt ? "--resume auto" : "");
    bool done = attempt == 3;  // the last one runs to the end
    for (int waited = 0, ms = delay_ms(pick); waited < ms && !done; waited += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      done = waitpid(pid, nullptr, WNOHANG) == pid;
    }
    if (attempt == 3) {
      EXPECT_EQ(wait_exit_code(pid), 0) << read_text(tmp.path() / "part3.log");
    } else if (!done) {
      kill(pid, SIGKILL);
      EXPECT_EQ(wait_exit_code(pid), 128 + SIGKILL);
      ++kills;
    }
  }
  ASSERT_TRUE(fs::exists(tmp.path() / "parts" / "model.pt")) << "never finished";
  EXPECT_GE(kills, 1);
  EXPECT_EQ(csv_without_seconds(tmp.path() / "parts" / "history.csv"),
            csv_without_seconds(tmp.path() / "whole" / "history.csv"));
  EXPECT_TRUE(same_model_files(tmp.path() / "parts" / "model.pt",
                               tmp.path() / "whole" / "model.pt"));
}

// ... and the run continues from it: with other --threads it says that on the CPU the result
// will differ by rounding, and summary.json's seconds count both parts.
TEST(CheckpointBinary, SigtermWritesACheckpointAndExitsWithThreeAndTheRunContinues) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  const pid_t pid = start_and_wait_for_first_checkpoint(data, tmp.path());
  kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit_code(pid), train::kExitStopped);
  const auto log = read_text(tmp.path() / "log");
  EXPECT_NE(log.find("stopped by SIGTERM in epoch"), std::string::npos) << log;
  const auto newest = train::latest_checkpoint(tmp.path() / "run" / "checkpoints");
  ASSERT_TRUE(newest);
  EXPECT_NE(log.find(newest->string()), std::string::npos) << log;
  EXPECT_TRUE(mgpu::testing::list_dir(tmp.path() / "run" / "checkpoints").size() <= 2u);

  const auto part2 = std::chrono::steady_clock::now();
  ASSERT_EQ(wait_exit_code(start_training(data, tmp.path() / "run", tmp.path() / "log2",
                                           "--resume auto --threads 2")),
            0)
      << read_text(tmp.path() / "log2");
  const double part2_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - part2).count();
  EXPECT_NE(read_text(tmp.path() / "log2")
                .find("the checkpoint was written with 1 LibTorch threads, this part has 2"),
            std::string::npos)
      << read_text(tmp.path() / "log2");
  const auto summary = nlohmann::json::parse(read_text(tmp.path() / "run" / "summary.json"));
  EXPECT_LE(summary["seconds_this_part"].get<double>(), part2_seconds);
  // The first part ran at least up to its first checkpoint: data, model and five steps.
  EXPECT_GT(summary["seconds"].get<double>(), summary["seconds_this_part"].get<double>() + 0.1)
      << summary.dump();
}

// The stop handlers are the run's first step: a SIGTERM while the data loads (before the run
// directory exists) is honoured after the first training step, with a checkpoint.
TEST(CheckpointBinary, ASigtermWhileTheDataLoadsStopsAfterTheFirstStep) {
  TempDir tmp;
  // 5,000 images, so that loading them takes a while.
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 1000).parent_path();
  const auto out = tmp.path() / "run";
  const pid_t pid = start_training(data, out, tmp.path() / "log", "--limit-train 64");
  const auto binary = fs::canonical(mgpu::testing::kMgpuBinary);
  auto catches_sigterm = [&] {  // SigCgt of /proc/PID/status: the signals it handles
    std::error_code ec;
    if (fs::read_symlink(fmt::format("/proc/{}/exe", pid), ec) != binary) return false;
    std::istringstream status(read_text(fmt::format("/proc/{}/status", pid)));
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("SigCgt:", 0) == 0) {
        return ((std::stoull(line.substr(7), nullptr, 16) >> (SIGTERM - 1)) & 1) != 0;
      }
    }
    return false;
  };
  bool caught = false;
  for (int i = 0; i < 200000 && !caught && waitpid(pid, nullptr, WNOHANG) == 0; ++i) {
    caught = catches_sigterm();
    if (!caught) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  ASSERT_TRUE(caught) << read_text(tmp.path() / "log");
  EXPECT_FALSE(fs::exists(out)) << "the handlers came after the run directory";
  kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit_code(pid), train::kExitStopped) << read_text(tmp.path() / "log");
  EXPECT_NE(read_text(tmp.path() / "log").find("stopped by SIGTERM in epoch 1 after step 1"),
            std::string::npos)
      << read_text(tmp.path() / "log");
  EXPECT_TRUE(train::latest_checkpoint(out / "checkpoints"));
}

TEST(CheckpointBinary, ASecondInterruptStopsAtOnce) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  const pid_t pid = start_and_wait_for_first_checkpoint(data, tmp.path());
  kill(pid, SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // two pending SIGINTs are one
  kill(pid, SIGINT);
  EXPECT_EQ(wait_exit_code(pid), 130) << read_text(tmp.path() / "log");
}

TEST(CheckpointBinary, ResumeRefusalsAreInputErrors) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  const pid_t pid = start_training(data, tmp.path() / "run", tmp.path() / "log",
                                   "--resume " + (tmp.path() / "nothing.pt").string());
  EXPECT_EQ(wait_exit_code(pid), 2);
  EXPECT_NE(read_text(tmp.path() / "log").find("nothing.pt: no such checkpoint file"),
            std::string::npos)
      << read_text(tmp.path() / "log");
}
