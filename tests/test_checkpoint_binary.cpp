// `mgpu train` run as a process: killed at random moments and resumed, stopped by signals
// (early, mid-epoch, twice), resume refusals, two processes stopped and resumed together, and
// a non-finite loss resumed with a lower rate as its message advises.
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
#include "train/Signals.h"
#include "train/files/Checkpoint.h"
#include "train/files/Weights.h"

using namespace mgpu;
using mgpu::testing::same_weights;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;

extern char** environ;

namespace {

// `mgpu train` on a tiny CIFAR-10 (200 training images, 13 steps of 16 per epoch), started in
// the background; its output goes to log.
// env: variables for it ("RANK=1 WORLD_SIZE=2 ..."); a flag in extra overrides the one before.
pid_t start_training(const fs::path& data, const fs::path& out, const fs::path& log,
                     const std::string& extra = "", const std::string& env = "") {
  const std::string cmd = fmt::format(
      "exec env {} {} train --gpus 0 --threads 1 --dataset cifar10 --data-dir {} --epochs 2 "
      "--batch-per-device 16 --verbose 2 --checkpoint-every 5 --out-dir {} {} > {} 2>&1",
      env, mgpu::testing::kMgpuBinary, data.string(), out.string(), extra, log.string());
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  return pid;
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string csv_without_seconds(const fs::path& csv) {
  std::istringstream in(read_file(csv));
  std::string out, line;
  while (std::getline(in, line)) {  // epoch,lr,seconds,... : drop the third field
    const auto a = line.find(',', line.find(',') + 1), b = line.find(',', a + 1);
    out += line.substr(0, a + 1) + line.substr(b + 1) + "\n";
  }
  return out;
}

// Waits (up to 60 s) for the run's first checkpoint: by then it handles signals.
void wait_for_first_checkpoint(const fs::path& out) {
  for (int i = 0; i < 1200 && !train::latest_checkpoint(out / "checkpoints"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// start_training into dir/run (log: dir/log), back once its first checkpoint is written.
pid_t start_and_wait_for_first_checkpoint(const fs::path& data, const fs::path& dir) {
  const pid_t pid = start_training(data, dir / "run", dir / "log");
  wait_for_first_checkpoint(dir / "run");
  return pid;
}

bool same_model_files(const fs::path& a, const fs::path& b) {
  const auto x = train::load_weights(a, torch::kCPU), y = train::load_weights(b, torch::kCPU);
  return same_weights(*x.module.ptr(), *y.module.ptr());
}

}  // namespace

TEST(CheckpointBinary, KilledAtRandomMomentsAndResumedItEndsAsAnUninterruptedRun) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  ASSERT_EQ(wait_exit_code(start_training(data, tmp.path() / "whole", tmp.path() / "whole.log")), 0)
      << read_file(tmp.path() / "whole.log");

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
      EXPECT_EQ(wait_exit_code(pid), 0) << read_file(tmp.path() / "part3.log");
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
  const auto log = read_file(tmp.path() / "log");
  EXPECT_NE(log.find("stopped by SIGTERM in epoch"), std::string::npos) << log;
  const auto newest = train::latest_checkpoint(tmp.path() / "run" / "checkpoints");
  ASSERT_TRUE(newest);
  EXPECT_NE(log.find(newest->string()), std::string::npos) << log;
  EXPECT_TRUE(mgpu::testing::list_dir(tmp.path() / "run" / "checkpoints").size() <= 2u);

  const auto part2 = std::chrono::steady_clock::now();
  ASSERT_EQ(wait_exit_code(start_training(data, tmp.path() / "run", tmp.path() / "log2",
                                           "--resume auto --threads 2")),
            0)
      << read_file(tmp.path() / "log2");
  const double part2_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - part2).count();
  EXPECT_NE(read_file(tmp.path() / "log2")
                .find("the checkpoint was written with 1 LibTorch threads, this part has 2"),
            std::string::npos)
      << read_file(tmp.path() / "log2");
  const auto summary = nlohmann::json::parse(read_file(tmp.path() / "run" / "summary.json"));
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
    std::istringstream status(read_file(fmt::format("/proc/{}/status", pid)));
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
  ASSERT_TRUE(caught) << read_file(tmp.path() / "log");
  EXPECT_FALSE(fs::exists(out)) << "the handlers came after the run directory";
  kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit_code(pid), train::kExitStopped) << read_file(tmp.path() / "log");
  EXPECT_NE(read_file(tmp.path() / "log").find("stopped by SIGTERM in epoch 1 after step 1"),
            std::string::npos)
      << read_file(tmp.path() / "log");
  EXPECT_TRUE(train::latest_checkpoint(out / "checkpoints"));
}

TEST(CheckpointBinary, ASecondInterruptStopsAtOnce) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  const pid_t pid = start_and_wait_for_first_checkpoint(data, tmp.path());
  kill(pid, SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // two pending SIGINTs are one
  kill(pid, SIGINT);
  EXPECT_EQ(wait_exit_code(pid), 130) << read_file(tmp.path() / "log");
}

TEST(CheckpointBinary, ResumeRefusalsAreInputErrors) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  const pid_t pid = start_training(data, tmp.path() / "run", tmp.path() / "log",
                                   "--resume " + (tmp.path() / "nothing.pt").string());
  EXPECT_EQ(wait_exit_code(pid), 2);
  EXPECT_NE(read_file(tmp.path() / "log").find("nothing.pt: no such checkpoint file"),
            std::string::npos)
      << read_file(tmp.path() / "log");
}

namespace {

// Two processes under torchrun's variables, one replica each, both with --out-dir out (only
// rank 0 writes there); logs log0 and log1 in dir.
std::array<pid_t, 2> start_two_ranks(const fs::path& data, const fs::path& out, const fs::path& dir,
                                     const std::string& extra) {
  const std::string env = fmt::format("WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={}",
                                      mgpu::testing::free_port());
  const std::string flags = "--limit-train 128 --limit-test 32 --batch-per-device 8 "
                            "--checkpoint-every 3 --comm-timeout 60 " + extra;
  std::array<pid_t, 2> pids{};
  for (int rank : {0, 1}) {
    pids[rank] = start_training(data, out, dir / fmt::format("log{}", rank), flags,
                                fmt::format("RANK={} {}", rank, env));
  }
  return pids;
}

}  // namespace

// The shipped MiniGoogLeNet (dropout and batch norm) on two processes, stopped mid-epoch by a
// SIGTERM to rank 1 and resumed with --resume auto on both: every parameter and buffer, and
// the history, end as in the uninterrupted run; rank 1 names the checkpoint rank 0 wrote.
TEST(CheckpointBinary, TwoProcessesStoppedMidEpochAndResumedEndAsTheUninterruptedRun) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  for (pid_t pid : start_two_ranks(data, tmp.path() / "whole", tmp.path(), "")) {
    EXPECT_EQ(wait_exit_code(pid), 0) << read_file(tmp.path() / "log0") << read_file(tmp.path() / "log1");
  }

  const auto parts = tmp.path() / "parts";
  const auto pids = start_two_ranks(data, parts, tmp.path(), "");
  wait_for_first_checkpoint(parts);  // step 3 of 8 in epoch 1
  kill(pids[1], SIGTERM);
  for (pid_t pid : pids) {
    EXPECT_EQ(wait_exit_code(pid), train::kExitStopped)
        << read_file(tmp.path() / "log0") << read_file(tmp.path() / "log1");
  }
  const auto newest = train::latest_checkpoint(parts / "checkpoints");
  ASSERT_TRUE(newest);
  const std::string name = newest->filename().string();
  EXPECT_NE(name.substr(name.size() - 9), "s000000.pt") << "the stop came at an epoch's end";
  const auto log0 = read_file(tmp.path() / "log0"), log1 = read_file(tmp.path() / "log1");
  EXPECT_NE(log0.find("stopped by another process's stop request"), std::string::npos) << log0;
  EXPECT_NE(log0.find("checkpoint " + newest->string()), std::string::npos) << log0;
  EXPECT_NE(log1.find("stopped by SIGTERM"), std::string::npos) << log1;
  EXPECT_NE(log1.find("checkpoint " + name + " (written by the rank 0 process"),
            std::string::npos)
      << log1;

  for (pid_t pid : start_two_ranks(data, parts, tmp.path(), "--resume auto")) {
    EXPECT_EQ(wait_exit_code(pid), 0) << read_file(tmp.path() / "log0") << read_file(tmp.path() / "log1");
  }
  EXPECT_NE(read_file(tmp.path() / "log0").find("resuming from " + newest->string()),
            std::string::npos);
  EXPECT_EQ(csv_without_seconds(parts / "history.csv"),
            csv_without_seconds(tmp.path() / "whole" / "history.csv"));
  EXPECT_TRUE(same_model_files(parts / "model.pt", tmp.path() / "whole" / "model.pt"));
}

// Ranks that would not train the same run are refused before the first step, on every rank,
// naming what differs, instead of waiting for --comm-timeout: here rank 1 is started without
// --resume while rank 0 resumes, and then rank 1 has another --limit-train. Rank 1 with
// --resume auto but its own --out-dir, without the checkpoint (nodes that share no folder),
// gets rank 0's copy and resumes.
TEST(CheckpointBinary, RanksThatDisagreeAboutTheStartAreAllRefusedAtOnce) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  auto logs = [&] { return read_file(tmp.path() / "log0") + read_file(tmp.path() / "log1"); };
  for (pid_t pid : start_two_ranks(data, tmp.path() / "a", tmp.path(), "--epochs 1")) {
    ASSERT_EQ(wait_exit_code(pid), 0) << logs();
  }
  const auto refused_by_both = [&](const std::string& rank1_out, const std::string& rank1_extra) {
    const std::string env = fmt::format("WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={}",
                                        mgpu::testing::free_port());
    const std::string flags = "--epochs 1 --limit-train 128 --limit-test 32 --batch-per-device 8 "
                              "--resume auto --comm-timeout 600";
    const auto started = std::chrono::steady_clock::now();
    const pid_t rank0 = start_training(data, tmp.path() / "a", tmp.path() / "log0", flags,
                                       "RANK=0 " + env);
    const pid_t rank1 = start_training(data, rank1_out, tmp.path() / "log1",
                                       flags + " " + rank1_extra, "RANK=1 " + env);
    EXPECT_EQ(wait_exit_code(rank0), 2) << logs();
    EXPECT_EQ(wait_exit_code(rank1), 2) << logs();
    const auto waited = std::chrono::steady_clock::now() - started;
    EXPECT_LT(waited, std::chrono::seconds(300)) << "they waited for the timeout";
  };
  refused_by_both((tmp.path() / "b").string(), "--resume ''");
  for (const char* log : {"log0", "log1"}) {
    const auto text = read_file(tmp.path() / log);
    EXPECT_NE(text.find("the processes do not start from the same place: rank 0 resumes from "
                        "checkpoint ckpt-e0001-s000000.pt, rank 1 starts afresh"),
              std::string::npos)
        << log << ": " << text;
  }
  EXPECT_FALSE(fs::exists(tmp.path() / "b")) << "rank 1 writes nothing";

  refused_by_both((tmp.path() / "a").string(), "--limit-train 96");
  for (const char* log : {"log0", "log1"}) {
    const auto text = read_file(tmp.path() / log);
    EXPECT_NE(text.find("rank 1 cannot start: checkpoint "), std::string::npos) << log << text;
    EXPECT_NE(text.find("train_images: the checkpoint has 128, this run 96"), std::string::npos)
        << log << ": " << text;
  }

  const std::string env = fmt::format("WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={}",
                                      mgpu::testing::free_port());
  const std::string flags = "--epochs 1 --limit-train 128 --limit-test 32 --batch-per-device 8 "
                            "--resume auto --comm-timeout 600";
  const pid_t rank0 =
      start_training(data, tmp.path() / "a", tmp.path() / "log0", flags, "RANK=0 " + env);
  const pid_t rank1 =
      start_training(data, tmp.path() / "b", tmp.path() / "log1", flags, "RANK=1 " + env);
  EXPECT_EQ(wait_exit_code(rank0), 0) << logs();
  EXPECT_EQ(wait_exit_code(rank1), 0) << logs();
  const std::string log0 = read_file(tmp.path() / "log0");
  EXPECT_NE(log0.find("checkpoint ckpt-e0001-s000000.pt ("), std::string::npos) << logs();
  EXPECT_NE(log0.find(" MB) of rank 0 sent to rank(s) 1, which lacked it"), std::string::npos)
      << logs();
  EXPECT_EQ(read_file(tmp.path() / "b" / "checkpoints" / "ckpt-e0001-s000000.pt"),
            read_file(tmp.path() / "a" / "checkpoints" / "ckpt-e0001-s000000.pt"));
}

// --resume FILE that no process has: every rank refuses before the first step, naming it (a
// process without the file would take another's copy, but there is none to take).
TEST(CheckpointBinary, AResumeFileThatNoProcessHasIsRefusedByEveryRank) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 20).parent_path();
  const std::string env = fmt::format("WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={}",
                                      mgpu::testing::free_port());
  const std::string flags = fmt::format(
      "--epochs 1 --limit-train 64 --limit-test 16 --batch-per-device 8 --comm-timeout 600 "
      "--resume {}",
      (tmp.path() / "nothing.pt").string());
  const pid_t rank0 = start_training(data, tmp.path() / "a", tmp.path() / "log0", flags,
                                     "RANK=0 " + env);
  const pid_t rank1 = start_training(data, tmp.path() / "b", tmp.path() / "log1", flags,
                                     "RANK=1 " + env);
  for (const pid_t pid : {rank0, rank1}) EXPECT_EQ(wait_exit_code(pid), 2);
  for (const char* log : {"log0", "log1"}) {
    const auto text = read_file(tmp.path() / log);
    EXPECT_NE(text.find("cannot start: --resume " + (tmp.path() / "nothing.pt").string() +
                        ": no such checkpoint file"),
              std::string::npos)
        << log << ": " << text;
  }
}

namespace {

// Two processes of one job, rank 1 started with `rank1_flags` added, both refused before the
// first step (exit 2): their logs.
std::vector<std::string> refused_ranks(const fs::path& dir, const std::string& rank1_flags) {
  const auto data = mgpu::testing::write_cifar_dir(dir / "data", 40).parent_path();
  const std::string env = fmt::format("WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={}",
                                      mgpu::testing::free_port());
  const std::string flags = "--epochs 1 --limit-train 128 --batch-per-device 8 --comm-timeout 600";
  const pid_t rank0 = start_training(data, dir / "run", dir / "log0", flags, "RANK=0 " + env);
  const pid_t rank1 = start_training(data, dir / "run", dir / "log1", flags + " " + rank1_flags,
                                     "RANK=1 " + env);
  EXPECT_EQ(wait_exit_code(rank0), 2);
  EXPECT_EQ(wait_exit_code(rank1), 2);
  return {read_file(dir / "log0"), read_file(dir / "log1")};
}

}  // namespace

// Processes started with different runs are refused before the first step, naming the rank
// and the settings that differ.
TEST(CheckpointBinary, ProcessesOfDifferentRunsAreAllRefusedBeforeTheFirstStep) {
  TempDir tmp;
  for (const auto& text : refused_ranks(tmp.path(), "--lr 0.01 --model resnet20")) {
    EXPECT_NE(text.find("the processes were started with different runs, so they cannot train "
                        "together: "),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("lr: rank 0 has 0.005, rank 1 0.01"), std::string::npos) << text;
    EXPECT_NE(text.find("model: rank 0 has \"minigooglenet\", rank 1 \"resnet20\""),
              std::string::npos)
        << text;
  }
  EXPECT_FALSE(fs::exists(tmp.path() / "run" / "checkpoints" / "ckpt-e0001-s000000.pt"));
}

// Ranks that would cut the gradients into different buckets would issue collectives that do not
// match (Gloo then aborts the process): they are refused before the first step, both exit 2.
TEST(CheckpointBinary, ProcessesThatCutTheGradientsDifferentlyAreRefused) {
  TempDir tmp;
  for (const auto& text : refused_ranks(tmp.path(), "--no-overlap")) {
    EXPECT_NE(text.find("gradient_buckets: rank 0 has \"2 buckets (--bucket-mb 25)\", rank 1 "
                        "\"one all-reduce after the backward pass (--no-overlap)\""),
              std::string::npos)
        << text;
  }
}

// The advice after a non-finite loss works, on two processes: both name the last good
// checkpoint (not the one just before the bad step, whose weights gave it), and a resume from
// it with a lower --lr (never a higher one) finishes the run and records the change.
TEST(CheckpointBinary, ANonFiniteLossIsResumedWithALowerRateAsItsMessageAdvises) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  const auto run = tmp.path() / "run";
  auto logs = [&] { return read_file(tmp.path() / "log0") + read_file(tmp.path() / "log1"); };
  // At 1e5 the loss of this data and model becomes non-finite a few steps in.
  for (pid_t pid : start_two_ranks(data, run, tmp.path(), "--lr 1e5 --checkpoint-every 1")) {
    EXPECT_EQ(wait_exit_code(pid), 1) << logs();
  }
  const auto log0 = read_file(tmp.path() / "log0"), log1 = read_file(tmp.path() / "log1");
  const std::string said = "non-finite in epoch 1 at step ";
  const auto at = log0.find(said);
  ASSERT_NE(at, std::string::npos) << logs();
  const int bad = std::stoi(log0.substr(at + said.size()));
  ASSERT_GE(bad, 3) << "no checkpoint two steps before the bad one: choose a lower --lr";
  const auto good = train::checkpoint_path(run / "checkpoints", 0, bad - 2);
  EXPECT_NE(log0.find("The last good checkpoint is " + good.string() +
                      ": continue from it with a lower learning rate (--resume it with --lr "
                      "10000, say)."),
            std::string::npos)
      << logs();
  EXPECT_NE(log1.find("The last good checkpoint is " + good.filename().string() +
                      " (written by the rank 0 process"),
            std::string::npos)
      << logs();

  for (pid_t pid : start_two_ranks(data, run, tmp.path(), "--lr 2e5 --resume " + good.string())) {
    EXPECT_EQ(wait_exit_code(pid), 2) << logs();
  }
  EXPECT_NE(read_file(tmp.path() / "log0").find("--lr 200000 is higher than the checkpoint's 100000"),
            std::string::npos)
      << logs();
  EXPECT_FALSE(fs::exists(run / "summary.json"));

  for (pid_t pid : start_two_ranks(data, run, tmp.path(), "--lr 0.001 --resume " + good.string())) {
    EXPECT_EQ(wait_exit_code(pid), 0) << logs();
  }
  EXPECT_NE(read_file(tmp.path() / "log0")
                .find("learning rate lowered from --lr 100000 to 0.001 from here on"),
            std::string::npos)
      << logs();
  const auto summary = nlohmann::json::parse(read_file(run / "summary.json"));
  EXPECT_EQ(summary["lr_changes"].dump(),
            fmt::format(R"([{{"after_step":{},"epoch":1,"from":100000.0,"to":0.001}}])", bad - 2));
  // The history's rate is each epoch's first step's: epoch 1 began at 1e5, epoch 2 at half
  // the lowered rate.
  const auto csv = read_file(run / "history.csv");
  EXPECT_NE(csv.find("\n1,100000,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\n2,0.0005,"), std::string::npos) << csv;
}

// A stop request (Slurm's SIGTERM) to a process still waiting for its peers ends the wait at
// once, as a requested stop (exit 3), saying there is nothing to keep, whether it hosts the
// rendezvous (rank 0, its peer never comes) or waits for a host that never listens (rank 1).
TEST(CheckpointBinary, ASigtermWhileTheJobAssemblesStopsAtOnce) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 20).parent_path();
  for (int rank : {0, 1}) {
    const fs::path log = tmp.path() / fmt::format("log{}", rank);
    const std::string env = fmt::format("RANK={} WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={}",
                                        rank, mgpu::testing::free_port());
    const pid_t pid = start_training(data, tmp.path() / fmt::format("run{}", rank), log,
                                     "--comm-timeout 300", env);
    // Rank 0 says when it waits (LibTorch's start-up takes seconds); rank 1 prints nothing (only
    // rank 0 does), so it is given as long as rank 0 took and a little more.
    const auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < 600 && read_file(log).find("processes: 2") == std::string::npos; ++i) {
      if (rank == 1 && std::chrono::steady_clock::now() - started > std::chrono::seconds(8)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const auto sent = std::chrono::steady_clock::now();
    kill(pid, SIGTERM);
    EXPECT_EQ(wait_exit_code(pid), train::kExitStopped) << read_file(log);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count(), 5)
        << "rank " << rank << " went on waiting for its peer";
    const std::string text = read_file(log);
    EXPECT_NE(text.find("stopped while waiting for the job to assemble"), std::string::npos) << text;
    EXPECT_NE(text.find("stopped by SIGTERM before the first step; nothing was trained, so "
                        "there is nothing to keep"),
              std::string::npos)
        << text;
  }
}
