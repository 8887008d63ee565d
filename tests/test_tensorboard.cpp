// mgpu train's TensorBoard log as TensorBoard reads it (tests/check_tensorboard.py, with PyPI's
// tensorboard): two processes killed after a checkpoint and resumed leave one line that
// matches history.csv; the flags that turn it down or off; fp16's loss scale.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <map>
#include <string>
#include <thread>

#include "Fixtures.h"
#include "app/commands/RunLogs.h"
#include "train/files/Checkpoint.h"
#include "train/report/EventFile.h"

using mgpu::testing::TempDir;
namespace fs = std::filesystem;

namespace {

struct Shell {
  int code;
  std::string output;
};

Shell shell(const std::string& command, const fs::path& log) {
  const int status = std::system((command + " > " + log.string() + " 2>&1").c_str());
  std::ifstream in(log);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1,
          {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()}};
}

std::string train_args(const fs::path& data, const fs::path& out, const std::string& extra) {
  return fmt::format(
      "train --gpus 0 --threads 1 --dataset cifar10 --no-download --data-dir {} --epochs 2 "
      "--limit-train 128 --limit-test 32 --batch-per-device 8 --verbose 2 --out-dir {} {}",
      data.string(), out.string(), extra);
}

// The steps of the batch_loss events in a run's train folder so far.
std::vector<int64_t> logged_steps(const fs::path& run) {
  std::vector<int64_t> steps;
  std::error_code ec;
  const auto folder = run / "tensorboard" / "train";
  if (!fs::is_directory(folder, ec)) return steps;
  for (const auto& name : mgpu::testing::list_dir(folder)) {
    if (name.find("tfevents") == std::string::npos) continue;
    for (const auto& record : mgpu::train::read_records(folder / name)) {
      const auto e = mgpu::train::decode_event(record);
      if (e.tag == "batch_loss") steps.push_back(e.step);
    }
  }
  return steps;
}

// The batch_loss points of a run's train folder (its newest file, which holds the whole line):
// step -> value.
std::map<int64_t, double> logged_losses(const fs::path& run) {
  const auto folder = run / "tensorboard" / "train";
  std::string newest;
  for (const auto& name : mgpu::testing::list_dir(folder)) {
    if (name.find("tfevents") != std::string::npos) newest = std::max(newest, name);
  }
  std::map<int64_t, double> losses;
  for (const auto& record : mgpu::train::read_records(folder / newest)) {
    const auto e = mgpu::train::decode_event(record);
    if (e.tag == "batch_loss") losses[e.step] = e.value;
  }
  return losses;
}

// seen: a copy of the train folder as a watching TensorBoard saw it before a resume, or empty.
Shell check_tensorboard(const fs::path& run, int every, int steps, const fs::path& log,
                        const fs::path& seen = {}) {
  return shell(fmt::format("{} {}/tests/check_tensorboard.py {} {} {} {}", mgpu::testing::kPython,
                           mgpu::testing::kSourceDir, run.string(), every, steps, seen.string()),
               log);
}

}  // namespace

// Two processes (MiniGoogLeNet, dropout included; global batch 16, 8 steps an epoch), killed
// with SIGKILL after their first checkpoint (step 5) once rank 0 has logged steps beyond it,
// then resumed: TensorBoard reads every step once and the epochs of history.csv; rank 1 writes
// no file.
TEST(TensorBoardBinary, TwoProcessesKilledAfterACheckpointAndResumedLeaveOneLineThatMatchesTheHistory) {
  TempDir tmp;
  const auto data = tmp.path() / "data";
  mgpu::testing::write_cifar_dir(data, 40);
  const auto run = tmp.path() / "run";
  const std::string flags = "--checkpoint-every 5 --tensorboard-every 1";
  auto start = [&](const std::string& extra, const std::string& part) {
    const int port = mgpu::testing::free_port();
    std::string script;
    for (int rank = 1; rank >= 0; --rank) {
      script += fmt::format(
          "RANK={0} WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={1} {2} {3} > {4}/{5}.rank{0}.log "
          "2>&1 &\n",
          rank, port, mgpu::testing::kMgpuBinary, train_args(data, run, flags + " " + extra),
          tmp.path().string(), part);
    }
    return script;
  };
  std::ofstream(tmp.path() / "part1.sh") << start("", "part1") << "wait\n";
  std::thread part1([&] { shell("exec bash " + (tmp.path() / "part1.sh").string(), tmp.path() / "part1.out"); });
  bool beyond = false;
  for (int i = 0; i < 1200 && !beyond; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto steps = logged_steps(run);
    beyond = fs::exists(run / "checkpoints") && !steps.empty() && steps.back() >= 7;
  }
  std::system(fmt::format("pkill -KILL -f -- '--out-dir {} '", run.string()).c_str());
  part1.join();
  ASSERT_TRUE(beyond) << "rank 0 never logged step 7";
  const auto killed_at = logged_steps(run);
  EXPECT_FALSE(fs::exists(run / "summary.json"));
  // The interrupted part logged steps that the resumed part trains again.
  const auto checkpoint = mgpu::train::latest_checkpoint(run / "checkpoints");
  ASSERT_TRUE(checkpoint);
  const std::string name = checkpoint->filename().string();  // ckpt-e0000-s000005.pt
  const int position = 8 * std::stoi(name.substr(6, 4)) + std::stoi(name.substr(12, 6));
  EXPECT_GT(killed_at.back(), position) << name;

  // What a TensorBoard that was watching saw of the killed part, for check_tensorboard.py.
  fs::copy(run / "tensorboard" / "train", tmp.path() / "seen-before-the-resume");
  std::ofstream(tmp.path() / "part2.sh") << start("--resume auto", "part2") << "wait\n";
  const auto part2 = shell("bash " + (tmp.path() / "part2.sh").string(), tmp.path() / "part2.out");
  std::ifstream log0(tmp.path() / "part2.rank0.log");
  const std::string log((std::istreambuf_iterator<char>(log0)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(fs::exists(run / "summary.json")) << log;
  EXPECT_NE(log.find("resuming from"), std::string::npos) << log;
  const auto r = check_tensorboard(run, 1, 16, tmp.path() / "check.log",
                                   tmp.path() / "seen-before-the-resume");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("tensorboard: ok"), std::string::npos) << r.output;
  // Every point, those after the resume included, is the uninterrupted run's: each step's own
  // loss (the first point after the resume covers the steps since the checkpoint only).
  const auto whole = tmp.path() / "whole";
  std::ofstream(tmp.path() / "whole.sh")
      << [&] {
           const int port = mgpu::testing::free_port();
           std::string script;
           for (int rank = 1; rank >= 0; --rank) {
             script += fmt::format(
                 "RANK={0} WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={1} {2} {3} > "
                 "{4}/whole.rank{0}.log 2>&1 &\n",
                 rank, port, mgpu::testing::kMgpuBinary, train_args(data, whole, flags),
                 tmp.path().string());
           }
           return script + "wait\n";
         }();
  shell("bash " + (tmp.path() / "whole.sh").string(), tmp.path() / "whole.out");
  const auto resumed = logged_losses(run), uninterrupted = logged_losses(whole);
  ASSERT_EQ(uninterrupted.size(), 16u);
  EXPECT_EQ(resumed, uninterrupted);
}

// --tensorboard-every 3 over two epochs of 4 steps: each point is the mean of the 3 steps
// since the one before, across the epoch's end too (step 6: steps 4, 5 and 6), as
// --tensorboard-every 1's points give them.
TEST(TensorBoardBinary, APointIsTheMeanOfTheStepsSinceThePointBefore) {
  TempDir tmp;
  const auto data = tmp.path() / "data";
  mgpu::testing::write_cifar_dir(data, 40);
  const std::string flags = "--limit-train 32 --model resnet20";
  auto r = mgpu::testing::run_mgpu(
      train_args(data, tmp.path() / "every1", flags + " --tensorboard-every 1"));
  ASSERT_EQ(r.code, 0) << r.err;
  r = mgpu::testing::run_mgpu(
      train_args(data, tmp.path() / "every3", flags + " --tensorboard-every 3"));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto each = logged_losses(tmp.path() / "every1"),
             three = logged_losses(tmp.path() / "every3");
  ASSERT_EQ(each.size(), 8u);
  ASSERT_EQ(three.size(), 2u);
  for (const int64_t step : {3, 6}) {
    const double mean = (each.at(step - 2) + each.at(step - 1) + each.at(step)) / 3;
    EXPECT_NEAR(three.at(step), mean, 1e-5 * mean) << "step " << step;
  }
}

// --tensorboard-every 0 logs the epochs only; --no-tensorboard writes no folder. run.json says
// what the run is from its first epoch on.
TEST(TensorBoardBinary, TheFlagsTurnTheStepsOrTheWholeLogOff) {
  TempDir tmp;
  const auto data = tmp.path() / "data";
  mgpu::testing::write_cifar_dir(data, 40);
  const auto epochs_only = tmp.path() / "epochs-only", none = tmp.path() / "none";
  auto r = mgpu::testing::run_mgpu(
      train_args(data, epochs_only, "--epochs 1 --tensorboard-every 0 --limit-train 32"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(logged_steps(epochs_only).empty());
  const auto check = shell(fmt::format("{} -c \"from tensorboard.backend.event_processing import "
                                       "event_accumulator as ea; a = ea.EventAccumulator('{}'); "
                                       "a.Reload(); print(sorted(a.Tags()['scalars']))\"",
                                       mgpu::testing::kPython,
                                       (epochs_only / "tensorboard" / "train").string()),
                           tmp.path() / "tags.log");
  EXPECT_EQ(check.output,
            "['epoch_acc', 'epoch_images_per_second', 'epoch_loss', 'epoch_lr', "
            "'epoch_seconds']\n");
  std::ifstream in(epochs_only / "run.json");
  const auto run = nlohmann::json::parse(in);
  EXPECT_EQ(run["model"], "minigooglenet");
  EXPECT_EQ(run["processes"], 1);
  EXPECT_EQ(run["config"]["global_batch"], 8);

  r = mgpu::testing::run_mgpu(train_args(data, none, "--epochs 1 --no-tensorboard --limit-train 32"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(fs::exists(none / "tensorboard"));
  EXPECT_TRUE(fs::exists(none / "history.csv"));
  r = mgpu::testing::run_mgpu(train_args(data, none, "--tensorboard-every -1"));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--tensorboard-every"), std::string::npos) << r.err;
}

// --amp fp16 logs the loss scale beside the loss (ResNet-20, float16 on the CPU: slow, so two
// steps): a power of two each time, the last one summary.json's.
TEST(TensorBoardBinary, Fp16LogsTheLossScaleEveryLoggedStep) {
  TempDir tmp;
  const auto data = tmp.path() / "data";
  mgpu::testing::write_cifar_dir(data, 40);
  const auto run = tmp.path() / "run";
  const auto r = mgpu::testing::run_mgpu(train_args(
      data, run,
      "--model resnet20 --amp fp16 --epochs 1 --limit-train 16 --limit-test 8 --tensorboard-every 1"));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto check = shell(
      fmt::format("{} -c \"from tensorboard.backend.event_processing import event_accumulator as "
                  "ea; a = ea.EventAccumulator('{}'); a.Reload(); "
                  "s = a.Scalars('batch_loss_scale'); import math; "
                  "print([e.step for e in s], all(math.log2(e.value) % 1 == 0 for e in s), "
                  "s[-1].value)\"",
                  mgpu::testing::kPython, (run / "tensorboard" / "train").string()),
      tmp.path() / "scale.log");
  std::ifstream in(run / "summary.json");
  const double last = nlohmann::json::parse(in)["loss_scale"].get<double>();
  EXPECT_EQ(check.output, fmt::format("[1, 2] True {:.1f}\n", last));
}

// Nothing is written before the first epoch's end (a run refused at its start overwrites
// nothing); then run.json, history.csv and the log, and an earlier run's summary.json goes, so
// that mgpu compare never takes the folder for a finished run.
TEST(RunLogs, TheFirstEpochWritesTheRunsFilesAndRemovesAnEarlierSummary) {
  TempDir tmp;
  const auto dir = tmp.path() / "run";
  fs::create_directories(dir);
  std::ofstream(dir / "summary.json") << "{}";
  mgpu::app::RunLogs logs(dir, nlohmann::json{{"model", "resnet20"}}, /*writer=*/true,
                          /*tensorboard=*/true, std::nullopt);
  EXPECT_TRUE(fs::exists(dir / "summary.json"));
  EXPECT_FALSE(fs::exists(dir / "run.json"));
  EXPECT_FALSE(fs::exists(dir / "tensorboard"));
  mgpu::train::EpochStats e;
  e.epoch = 1;
  logs.epoch({e}, 10);
  EXPECT_FALSE(fs::exists(dir / "summary.json"));
  EXPECT_TRUE(fs::exists(dir / "run.json"));
  EXPECT_TRUE(fs::exists(dir / "history.csv"));
  EXPECT_TRUE(fs::is_directory(dir / "tensorboard" / "validation"));
  // A process that does not write (rank 1) writes nothing.
  const auto other = tmp.path() / "rank1";
  fs::create_directories(other);
  mgpu::app::RunLogs quiet(other, nlohmann::json::object(), /*writer=*/false, true, std::nullopt);
  quiet.epoch({e}, 10);
  EXPECT_TRUE(mgpu::testing::list_dir(other).empty());
}
