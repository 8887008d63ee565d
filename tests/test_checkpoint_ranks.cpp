// `mgpu train` as two processes: stopped mid-epoch and resumed together, ranks that disagree
// about the start (or run different runs, or cut the gradients differently) all refused, a
// non-finite loss resumed with a lower rate as its message advises, a SIGTERM while the job
// assembles.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "Fixtures.h"
#include "TrainingProcess.h"
#include "train/Signals.h"
#include "train/files/Checkpoint.h"

using namespace mgpu;
using namespace mgpu::testing::process;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;
using mgpu::testing::read_text;

// The shipped MiniGoogLeNet (dropout and batch norm) on two processes, stopped mid-epoch by a
// SIGTERM to rank 1 and resumed with --resume auto on both: every parameter and buffer, and
// the history, end as in the uninterrupted run; rank 1 names the checkpoint rank 0 wrote.
TEST(CheckpointBinary, TwoProcessesStoppedMidEpochAndResumedEndAsTheUninterruptedRun) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 40).parent_path();
  for (pid_t pid : start_two_ranks(data, tmp.path() / "whole", tmp.path(), "")) {
    EXPECT_EQ(wait_exit_code(pid), 0) << read_text(tmp.path() / "log0") << read_text(tmp.path() / "log1");
  }

  const auto parts = tmp.path() / "parts";
  const auto pids = start_two_ranks(data, parts, tmp.path(), "");
  wait_for_first_checkpoint(parts);  // step 3 of 8 in epoch 1
  kill(pids[1], SIGTERM);
  for (pid_t pid : pids) {
    EXPECT_EQ(wait_exit_code(pid), train::kExitStopped)
        << read_text(tmp.path() / "log0") << read_text(tmp.path() / "log1");
  }
  const auto newest = train::latest_checkpoint(parts / "checkpoints");
  ASSERT_TRUE(newest);
  const std::string name = newest->filename().string();
  EXPECT_NE(name.substr(name.size() - 9), "s000000.pt") << "the stop came at an epoch's end";
  const auto log0 = read_text(tmp.path() / "log0"), log1 = read_text(tmp.path() / "log1");
  EXPECT_NE(log0.find("stopped by another process's stop request"), std::string::npos) << log0;
  EXPECT_NE(log0.find("checkpoint " + newest->string()), std::string::npos) << log0;
  EXPECT_NE(log1.find("stopped by SIGTERM"), std::string::npos) << log1;
  EXPECT_NE(log1.find("checkpoint " + name + " (written by the rank 0 process"),
            std::string::npos)
      << log1;

  for (pid_t pid : start_two_ranks(data, parts, tmp.path(), "--resume auto")) {
    EXPECT_EQ(wait_exit_code(pid), 0) << read_text(tmp.path() / "log0") << read_text(tmp.path() / "log1");
  }
  EXPECT_NE(read_text(tmp.path() / "log0").find("resuming from " + newest->string()),
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
  auto logs = [&] { return read_text(tmp.path() / "log0") + read_text(tmp.path() / "log1"); };
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
    const auto text = read_text(tmp.path() / log);
    EXPECT_NE(text.find("the processes do not start from the same place: rank 0 resumes from "
                        "checkpoint ckpt-e0001-s000000.pt, rank 1 starts afresh"),
              std::string::npos)
        << log << ": " << text;
  }
  EXPECT_FALSE(fs::exists(tmp.path() / "b")) << "rank 1 writes nothing";

  refused_by_both((tmp.path() / "a").string(), "--limit-train 96");
  for (const char* log : {"log0", "log1"}) {
    const auto text = read_text(tmp.path() / log);
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
  const std::string log0 = read_text(tmp.path() / "log0");
  EXPECT_NE(log0.find("checkpoint ckpt-e0001-s000000.pt ("), std::string::npos) << logs();
  EXPECT_NE(log0.find(" MB) of rank 0 sent to rank(s) 1, which lacked it"), std::string::npos)
      << logs();
  EXPECT_EQ(read_text(tmp.path() / "b" / "checkpoints" / "ckpt-e0001-s000000.pt"),
            read_text(tmp.path() / "a" / "checkpoints" / "ckpt-e0001-s000000.pt"));
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
    const auto text = read_text(tmp.path() / log);
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
  return {read_text(dir / "log0"), read_text(dir / "log1")};
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
  auto logs = [&] { return read_text(tmp.path() / "log0") + read_text(tmp.path() / "log1"); };
  // At 1e5 the loss of this data and model becomes non-finite a few steps in.
  for (pid_t pid : start_two_ranks(data, run, tmp.path(), "--lr 1e5 --checkpoint-every 1")) {
    EXPECT_EQ(wait_exit_code(pid), 1) << logs();
  }
  const auto log0 = read_text(tmp.path() / "log0"), log1 = read_text(tmp.path() / "log1");
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
  EXPECT_NE(read_text(tmp.path() / "log0").find("--lr 200000 is higher than the checkpoint's 100000"),
            std::string::npos)
      << logs();
  EXPECT_FALSE(fs::exists(run / "summary.json"));

  for (pid_t pid : start_two_ranks(data, run, tmp.path(), "--lr 0.001 --resume " + good.string())) {
    EXPECT_EQ(wait_exit_code(pid), 0) << logs();
  }
  EXPECT_NE(read_text(tmp.path() / "log0")
                .find("learning rate lowered from --lr 100000 to 0.001 from here on"),
            std::string::npos)
      << logs();
  const auto summary = nlohmann::json::parse(read_text(run / "summary.json"));
  EXPECT_EQ(summary["lr_changes"].dump(),
            fmt::format(R"([{{"after_step":{},"epoch":1,"from":100000.0,"to":0.001}}])", bad - 2));
  // The history's rate is each epoch's first step's: epoch 1 began at 1e5, epoch 2 at half
  // the lowered rate.
  const auto csv = read_text(run / "history.csv");
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
    for (int i = 0; i < 600 && read_text(log).find("processes: 2") == std::string::npos; ++i) {
      if (rank == 1 && std::chrono::steady_clock::now() - started > std::chrono::seconds(8)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const auto sent = std::chrono::steady_clock::now();
    kill(pid, SIGTERM);
    EXPECT_EQ(wait_exit_code(pid), train::kExitStopped) << read_text(log);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count(), 5)
        << "rank " << rank << " went on waiting for its peer";
    const std::string text = read_text(log);
    EXPECT_NE(text.find("stopped while waiting for the job to assemble"), std::string::npos) << text;
    EXPECT_NE(text.find("stopped by SIGTERM before the first step; nothing was trained, so "
                        "there is nothing to keep"),
              std::string::npos)
        << text;
  }
}
