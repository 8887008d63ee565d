// What a user sees on a terminal during the long waits (util-linux's `script` gives the command
// a terminal): the bar says when the test set is evaluated, mgpu evaluate draws a bar of the
// images done, mgpu bench says what it is timing; none of it goes into a log.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "Fixtures.h"

using mgpu::testing::TempDir;
namespace fs = std::filesystem;

namespace {

// Runs mgpu with args on a terminal; returns what the terminal received.
std::string on_terminal(const std::string& args, const fs::path& dir) {
  const auto typescript = dir / "typescript";
  const std::string command =
      fmt::format("script -qec '{} {}' {} > /dev/null 2>&1", mgpu::testing::kMgpuBinary, args,
                  typescript.string());
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
  std::ifstream in(typescript);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST(ProgressOnATerminal, TrainingSaysItEvaluatesAndEvaluateDrawsABar) {
  TempDir tmp;
  const auto data = tmp.path() / "data";
  mgpu::testing::write_cifar_dir(data, 20);
  const std::string flags = fmt::format(
      "--gpus 0 --threads 1 --dataset cifar10 --no-download --data-dir {} --limit-test 20",
      data.string());
  const std::string train = on_terminal(
      fmt::format("train {} --epochs 1 --limit-train 32 --batch-per-device 16 --out-dir {}",
                  flags, (tmp.path() / "run").string()),
      tmp.path());
  // After the last step's figures, the same bar, then the epoch's line over it.
  const auto at = train.find(" - evaluating 20 test images...");
  ASSERT_NE(at, std::string::npos) << train;
  EXPECT_NE(train.rfind("\r2/2 [==============================] - ", at), std::string::npos)
      << train;
  EXPECT_NE(train.find("\r2/2 [==============================] - ", at), std::string::npos)
      << train;
  EXPECT_NE(train.find("ms/step - loss: ", at), std::string::npos) << train;

  const std::string evaluate =
      on_terminal(fmt::format("evaluate {} --weights {} --batch 16 --out-dir {}", flags,
                              (tmp.path() / "run" / "model.pt").string(),
                              (tmp.path() / "eval").string()),
                  tmp.path());
  EXPECT_NE(evaluate.find("\revaluating: 20/20 images [" + std::string(30, '=') + "]"),
            std::string::npos)
      << evaluate;
  // Not on a terminal: no bar.
  const auto r = mgpu::testing::run_mgpu(
      fmt::format("evaluate {} --weights {} --out-dir {}", flags,
                  (tmp.path() / "run" / "model.pt").string(), (tmp.path() / "eval2").string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("evaluating:"), std::string::npos) << r.err;
}

TEST(ProgressOnATerminal, BenchSaysWhatItIsTimingAndLeavesOnlyTheTable) {
  TempDir tmp;
  const std::string flags = "--model resnet20 --cpu-replicas 2 --steps 1 --warmup 1 --threads 1 "
                            "--batch-per-device 8";
  const std::string bench =
      on_terminal(fmt::format("bench {} --out-dir {}", flags, (tmp.path() / "a").string()),
                  tmp.path());
  for (const char* said :
       {"timing as flagged with 2 replica(s): 1 warm-up and 1 timed steps...",
        "timing the all-reduce of the gradients alone...",
        "timing the same steps with --no-overlap (one all-reduce after the backward pass)..."}) {
    EXPECT_NE(bench.find(said), std::string::npos) << said << "\n" << bench;
  }
  // Each is wiped before the row: the row starts after a carriage return.
  EXPECT_NE(bench.find("\ras flagged            2"), std::string::npos) << bench;
  const auto r = mgpu::testing::run_mgpu(
      fmt::format("bench {} --out-dir {}", flags, (tmp.path() / "b").string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("timing "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nas flagged            2"), std::string::npos) << r.out;
}
