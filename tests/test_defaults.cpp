// The fast defaults as users meet them: a CPU run takes the fastest path that changes float32
// results only by rounding (channels-last, measured in docs/benchmarks.md), each default has an
// off switch, and a CPU with bfloat16 instructions says what --amp bf16 would give.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "Fixtures.h"
#include "train/Device.h"

using mgpu::testing::TempDir;
using mgpu::testing::run_mgpu;

// As users run it: a CPU run takes the fast exact path (channels-last) unless told not to, and
// on a CPU with bfloat16 instructions says that --amp bf16 would be faster, unless --amp is set.
TEST(CliBinary, ACpuRunTakesTheFastDefaultsAndTheirOffSwitch) {
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 20);
  const std::string common = "train --gpus 0 --verbose 2 --epochs 1 --batch-per-device 16 "
                             "--threads 1 --limit-train 32 --limit-test 8 --data-dir " +
                             (tmp.path() / "data").string() + " --out-dir ";
  const auto summary = [&](const char* run) {
    std::ifstream in(tmp.path() / run / "summary.json");
    return nlohmann::json::parse(in);
  };
  auto r = run_mgpu(common + (tmp.path() / "fast").string());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(summary("fast")["config"]["channels_last"], true);
  const bool hint = r.out.find("--amp bf16 would train about twice as fast") != std::string::npos;
  EXPECT_EQ(hint, mgpu::train::cpu_has_bf16()) << r.out;
  r = run_mgpu(common + (tmp.path() / "plain").string() + " --no-channels-last --amp bf16");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(summary("plain")["config"]["channels_last"], false);
  EXPECT_EQ(r.out.find("would train about twice as fast"), std::string::npos) << r.out;
}

// README's quick start, run as written there (its command is read from README.md) except for
// the run directory and one LibTorch thread: the suite runs two tests at a time, and two runs
// each spinning all cores' threads took over 600 s here where one alone takes 90 (with one
// thread: 137 s, val_acc 0.6850, 0.7755, 0.8150). The validation accuracy rises every epoch
// and ends at 0.75 or more. It needs Debian's dataset-fashion-mnist (scripts/bootstrap.sh
// installs it); a machine without it (the GPU machine's Ubuntu) skips it, saying so. Like the
// command, it trains on the GPU where one is visible, and says which device it used.
TEST(CliBinary, TheReadmesQuickStartLearnsAsItShows) {
  const std::string fashion = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::is_directory(fashion)) {
    GTEST_SKIP() << "README's quick start reads Fashion-MNIST from " << fashion
                 << " (Debian's dataset-fashion-mnist), which this machine does not have";
  }
  std::ifstream in(std::string(mgpu::testing::kSourceDir) + "/README.md");
  std::string line, command;
  while (std::getline(in, line)) {
    const auto at = line.find("./scripts/bootstrap.sh && ./build/mgpu train ");
    if (at != std::string::npos) command = line.substr(line.find("train ", at));
  }
  ASSERT_FALSE(command.empty()) << "README.md has no quick-start command";
  const auto out_dir = command.find("--out-dir runs/quickstart");
  ASSERT_NE(out_dir, std::string::npos) << command;
  TempDir tmp;
  command.replace(out_dir, std::string("--out-dir runs/quickstart").size(),
                  "--threads 1 --verbose 2 --out-dir " + (tmp.path() / "run").string());
  const auto r = run_mgpu(command);
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream summary_file(tmp.path() / "run" / "summary.json");
  const auto summary = nlohmann::json::parse(summary_file);
  std::cout << "README's quick start trained on " << summary["device"].dump() << "\n";
  RecordProperty("device", summary["device"].dump());
  EXPECT_GE(summary["final"]["val_acc"].get<double>(), 0.75) << r.out;
  std::ifstream csv(tmp.path() / "run" / "history.csv");
  std::getline(csv, line);  // epoch,lr,seconds,loss,acc,val_loss,val_acc
  double previous = 0;
  int epochs = 0;
  while (std::getline(csv, line)) {
    const double val_acc = std::stod(line.substr(line.rfind(',') + 1));
    EXPECT_GT(val_acc, previous) << "epoch " << epochs + 1 << ": " << r.out;
    previous = val_acc;
    ++epochs;
  }
  EXPECT_EQ(epochs, 3);
}
