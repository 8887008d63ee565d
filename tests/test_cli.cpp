// The command line: defaults, every refusal (exit code 2 and a message naming the flag).
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <set>
#include <sstream>

#include "Fixtures.h"
#include "app/Cli.h"
#include "data/InputError.h"
#include "train/Signals.h"

using mgpu::app::Command;
using mgpu::train::TrainConfig;
using mgpu::app::parse_command_line;
using mgpu::testing::TempDir;
using mgpu::testing::run_mgpu;
using mgpu::testing::refusal;

TEST(Cli, TrainDefaultsAreTheTutorials) {
  const Command cmd = parse_command_line({"mgpu", "train", "--gpus", "0"});
  ASSERT_EQ(cmd.name, "train");
  EXPECT_EQ(cmd.as<TrainConfig>().epochs, 70);
  EXPECT_DOUBLE_EQ(cmd.as<TrainConfig>().lr, 5e-3);
  EXPECT_DOUBLE_EQ(cmd.as<TrainConfig>().momentum, 0.9);
  EXPECT_DOUBLE_EQ(cmd.as<TrainConfig>().power, 1.0);
  EXPECT_EQ(cmd.as<TrainConfig>().batch_per_device, 64);
  EXPECT_EQ(cmd.as<TrainConfig>().gpus, 0);
  EXPECT_EQ(cmd.as<TrainConfig>().data.dataset, "auto");
  // The recipe's other settings: the tutorial's plain SGD and poly decay.
  const auto& t = cmd.as<TrainConfig>();
  EXPECT_EQ(t.schedule, "poly");
  EXPECT_EQ(t.weight_decay, 0.0);
  EXPECT_TRUE(t.decay_norm_bias);
  EXPECT_FALSE(t.nesterov);
  EXPECT_EQ(t.label_smoothing, 0.0);
  EXPECT_EQ(t.clip_grad_norm, 0.0);
}

TEST(Cli, TrainFlagsAreRead) {
  const Command cmd = parse_command_line(
      {"mgpu", "train", "--output", "p.png", "--gpus", "0", "--dataset", "cifar10", "--data-dir",
       "d", "--epochs", "3", "--lr", "0.01", "--power", "2", "--momentum", "0.5",
       "--batch-per-device", "32", "--seed", "9", "--threads", "2", "--limit-train", "100",
       "--limit-test", "50", "--out-dir", "o", "--verbose", "0", "--deterministic"});
  const auto& t = cmd.as<TrainConfig>();
  EXPECT_TRUE(t.deterministic);
  EXPECT_FALSE(parse_command_line({"mgpu", "train"}).as<TrainConfig>().deterministic);
  EXPECT_EQ(t.plot_path, "p.png");
  EXPECT_EQ(t.data.dataset, "cifar10");
  EXPECT_EQ(t.data.data_dir, "d");
  EXPECT_EQ(t.epochs, 3);
  EXPECT_DOUBLE_EQ(t.lr, 0.01);
  EXPECT_DOUBLE_EQ(t.power, 2.0);
  EXPECT_DOUBLE_EQ(t.momentum, 0.5);
  EXPECT_EQ(t.batch_per_device, 32);
  EXPECT_EQ(t.seed, 9u);
  EXPECT_EQ(t.threads, 2);
  EXPECT_EQ(t.data.limit_train, 100);
  EXPECT_EQ(t.data.limit_test, 50);
  EXPECT_EQ(t.out_dir, "o");
  EXPECT_EQ(t.verbose, 0);
}

TEST(Cli, RefusalsNameTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"train", "--epochs", "0"}, "--epochs 0"},
      {{"train", "--epochs", "-3"}, "--epochs -3"},
      {{"train", "--batch-per-device", "0"}, "--batch-per-device 0"},
      {{"train", "--batch-per-device", "many"}, "many"},
      {{"train", "--lr", "nan"}, "lr"},
      {{"train", "--lr", "inf"}, "lr"},
      {{"train", "--lr", "-0.1"}, "--lr -0.1"},
      {{"train", "--lr", "0"}, "--lr 0"},
      {{"train", "--momentum", "1"}, "--momentum 1"},
      {{"train", "--power", "-1"}, "--power -1"},
      {{"train", "--gpus", "-1"}, "--gpus -1"},
      {{"train", "--threads", "-2"}, "--threads -2"},
      {{"train", "--limit-train", "-5"}, "--limit-train -5"},
      {{"train", "--verbose", "3"}, "--verbose 3: expected an integer from 0 to 2"},
      {{"train", "--verbose", "-1"}, "--verbose -1: expected an integer from 0 to 2"},
      {{"evaluate", "--weights", "w.pt", "--labels", "fine"},
       "--labels is for --dataset cifar100, not auto (give --dataset cifar100 with it)"},
      {{"train", "--seed", "-1"}, "--seed -1"},
      {{"train", "--cpu-replicas", "0"}, "--cpu-replicas 0"},
      {{"train", "--gpus", "1", "--cpu-replicas", "2"}, "--cpu-replicas 2 needs --gpus 0"},
      {{"train", "--accumulate", "0"}, "--accumulate 0"},
      {{"train", "--comm", "mpi"}, "--comm 'mpi'"},
      {{"train", "--lr-scaling", "sqrt"}, "--lr-scaling 'sqrt'"},
      {{"train", "--warmup-epochs", "-1"}, "--warmup-epochs -1"},
      {{"train", "--epochs", "3", "--warmup-epochs", "4"}, "--warmup-epochs 4"},
      {{"train", "--warmup-epochs", "2"}, "--warmup-epochs 2 needs --lr-scaling linear"},
      {{"train", "--comm-timeout", "0"}, "--comm-timeout 0"},
      {{"train", "--comm-timeout", "nan"}, "--comm-timeout nan"},
      {{"train", "--dataset", "imagenet"}, "--dataset 'imagenet'"},
      {{"train", "--no-such-flag"}, "no-such-flag"},
      {{"train", "stray"}, "stray"},
      {{"fly"}, "unknown command 'fly'"},
      {{"plot"}, "history.csv"},
      {{"bench", "--gpus", "0"}, "--gpus '0'"},
      {{"bench", "--gpus", "1,,2"}, "--gpus '1,,2'"},
      {{"bench", "--cpu-replicas", "2,x"}, "--cpu-replicas '2,x'"},
      {{"bench", "--gpus", "1", "--cpu-replicas", "1"}, "not both"},
      {{"bench", "--steps", "0"}, "--steps 0"},
      {{"train", "--amp", "fp8"}, "--amp 'fp8': expected off, bf16 or fp16"},
      {{"train", "--gpus", "0", "--cuda-graphs"}, "--cuda-graphs needs a GPU"},
      {{"bench", "--cuda-graphs"}, "--cuda-graphs needs GPUs"},
      {{"bench", "--levels", "fp32,turbo"}, "unknown level 'turbo'"},
      {{"bench", "--levels", "cuda-graphs"}, "--levels cuda-graphs needs GPUs"},
      {{"bench", "--cpu-replicas", "1,2", "--comm", "nccl"}, "--comm nccl needs GPUs"},
  };
  for (const auto& [args, needle] : cases) {
    const std::string msg = refusal(args);
    EXPECT_NE(msg.find(needle), std::string::npos)
        << "args: " << args.back() << " gave: '" << msg << "'";
  }
}

TEST(Cli, EveryCommandInTheTableHasItsUsageAndHelp) {
  // A command is a file in app/commands/ and a line in Commands.def (docs/extending.md):
  // the table alone must make it reachable, listed and explained.
  const auto& table = mgpu::app::command_table();
  ASSERT_EQ(table.size(), 8u);
  const std::string top = mgpu::app::top_help();
  for (const auto& spec : table) {
    EXPECT_NE(top.find(spec.usage), std::string::npos) << spec.name;
    EXPECT_EQ(top.find(spec.usage), top.find(std::string("  mgpu ") + spec.name)) << spec.name;
    const Command help = parse_command_line({"mgpu", spec.name, "--help"});
    ASSERT_TRUE(help.is_help()) << spec.name;
    EXPECT_NE(help.help.find(std::string("mgpu ") + spec.name), std::string::npos) << help.help;
  }
  EXPECT_NE(refusal({"fly"}).find("expected train, plot, compare, bench, models, evaluate, "
                                  "predict, export or help"),
            std::string::npos)
      << refusal({"fly"});
}

TEST(Cli, HelpListsEveryExitCodeTheBinaryReturns) {
  const std::string top = mgpu::app::top_help();
  for (int code : {0, 1, 2, mgpu::train::kExitStopped, mgpu::train::kExitInterrupted}) {
    EXPECT_NE(top.find(fmt::format("\n  {:<4} ", code)), std::string::npos) << code << top;
  }
}

// README's training table names every flag `mgpu train --help` lists.
TEST(CliBinary, ReadmeNamesEveryTrainFlag) {
  std::ifstream file(std::string(mgpu::testing::kSourceDir) + "/README.md");
  const std::string readme{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  ASSERT_FALSE(readme.empty());
  const auto help = run_mgpu("train --help");
  ASSERT_EQ(help.code, 0);
  std::istringstream lines(help.out);
  int flags = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.compare(0, 8, "      --") != 0) continue;  // an option's first line
    const std::string flag = line.substr(6, line.find(' ', 6) - 6);
    ++flags;
    EXPECT_NE(readme.find("`" + flag + "`"), std::string::npos) << flag << " is not in README.md";
  }
  EXPECT_GT(flags, 30);  // all of them were read
}

// main installs the stop handlers before anything else runs, for `mgpu train`; every other
// command gets the default actions back, so a SIGTERM ends it as usual.
TEST(CliBinary, CommandsOtherThanTrainEndOnSigtermAsUsual) {
  TempDir tmp;
  const auto r = run_mgpu("bench --cpu-replicas 1 --steps 100000 --batch-per-device 4 --threads 1 "
                          "--out-dir " + (tmp.path() / "bench").string(),
                          "timeout --preserve-status -s TERM 3 ");
  EXPECT_EQ(r.code, 128 + SIGTERM) << r.err;
}

TEST(Cli, HelpExplainsEveryFlag) {
  const Command cmd = parse_command_line({"mgpu", "train", "--help"});
  ASSERT_TRUE(cmd.is_help());
  for (const char* flag : {"--output", "--gpus", "--dataset", "--data-dir", "--epochs", "--lr",
                           "--power", "--momentum", "--batch-per-device", "--seed", "--threads",
                           "--limit-train", "--limit-test", "--out-dir", "--verbose",
                           "--cpu-replicas", "--accumulate", "--comm", "--comm-timeout", "--lr-scaling",
                           "--warmup-epochs", "--deterministic"}) {
    EXPECT_NE(cmd.help.find(flag), std::string::npos) << flag;
  }
  EXPECT_TRUE(parse_command_line({"mgpu"}).is_help());
}

TEST(CliBinary, BadUsageExitsWithTwoAndAMessage) {
  auto r = run_mgpu("train --epochs 0");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("mgpu: error: --epochs 0"), std::string::npos) << r.err;
  r = run_mgpu("train --lr nan");
  EXPECT_EQ(r.code, 2) << r.err;
  r = run_mgpu("bogus");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(run_mgpu("--help").code, 0);
  r = run_mgpu("");  // no command: the usage, as a bad usage
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("Usage:"), std::string::npos) << r.err;
}

TEST(CliBinary, MissingDataIsAnInputError) {
  TempDir tmp;
  auto r = run_mgpu("train --gpus 0 --dataset cifar10 --no-download --data-dir " +
                    (tmp.path() / "none").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("no CIFAR-10 files in"), std::string::npos) << r.err;
}

TEST(CliBinary, UnwritableOutDirIsRefusedBeforeTraining) {
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 2);
  std::ofstream(tmp.path() / "file") << "x";
  auto r = run_mgpu("train --gpus 0 --data-dir " + (tmp.path() / "data").string() +
                    " --out-dir " + (tmp.path() / "file" / "run").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--out-dir"), std::string::npos) << r.err;
}

TEST(CliBinary, RunsStartedTogetherWithTheDefaultOutDirEachWriteTheirOwn) {
  // The default --out-dir, runs/<dataset>-<time>, names the second: three runs started at once
  // must still leave three run directories, each with its own seed's summary.
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 4);
  const std::string train =
      fmt::format("{} train --gpus 0 --threads 1 --model resnet20 --dataset cifar10 "
                  "--no-download --data-dir data --epochs 1 --batch-per-device 16 --verbose 0",
                  mgpu::testing::kMgpuBinary);
  const std::string cmd = fmt::format(
      "cd {} && for s in 1 2 3; do ({} --seed $s > log$s 2>&1; echo $? > rc$s) & done; wait",
      tmp.path().string(), train);
  ASSERT_EQ(std::system(fmt::format("bash -c '{}'", cmd).c_str()), 0);
  std::set<int> seeds;
  for (const auto& name : mgpu::testing::list_dir(tmp.path() / "runs")) {
    std::ifstream in(tmp.path() / "runs" / name / "summary.json");
    std::stringstream text;
    text << in.rdbuf();
    const auto at = text.str().find("\"seed\": ");
    ASSERT_NE(at, std::string::npos) << name;
    seeds.insert(std::stoi(text.str().substr(at + 8)));
  }
  for (int s = 1; s <= 3; ++s) {
    std::ifstream rc(tmp.path() / fmt::format("rc{}", s));
    std::ifstream log(tmp.path() / fmt::format("log{}", s));
    std::stringstream text;
    text << log.rdbuf();
    int code = -1;
    rc >> code;
    EXPECT_EQ(code, 0) << text.str();
  }
  EXPECT_EQ(seeds, (std::set<int>{1, 2, 3}));
}

TEST(CliBinary, ARunWithLinearScalingShowsAndRecordsTheScaledRate) {
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 8);
  const auto r = run_mgpu(fmt::format(
      "train --gpus 0 --cpu-replicas 2 --lr-scaling linear --warmup-epochs 1 --epochs 1 "
      "--batch-per-device 8 --threads 1 --verbose 2 --model resnet20 --data-dir {} --out-dir {}",
      (tmp.path() / "data").string(), (tmp.path() / "run").string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("lr 0.005 x 2 = 0.01 (--lr-scaling linear, warm-up 1 epochs)"),
            std::string::npos)
      << r.out;
  std::ifstream in(tmp.path() / "run" / "summary.json");
  const std::string summary{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_NE(summary.find("\"lr_scaling\": \"linear\""), std::string::npos) << summary;
  EXPECT_NE(summary.find("\"warmup_epochs\": 1.0"), std::string::npos) << summary;
}

TEST(CliBinary, FewerImagesThanOneBatchIsAnInputError) {
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 10);
  auto r = run_mgpu("train --gpus 0 --verbose 0 --data-dir " + (tmp.path() / "data").string() +
                    " --limit-train 20 --batch-per-device 32 --out-dir " +
                    (tmp.path() / "run").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("fewer than one global batch of 32"), std::string::npos) << r.err;
}

TEST(CliBinary, WithoutGnuplotARunWarnsAndKeepsEverythingElse) {
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 20);
  const auto run = tmp.path() / "run";
  auto r = run_mgpu("train --gpus 0 --verbose 0 --epochs 1 --batch-per-device 16 --threads 2 "
                    "--limit-train 32 --limit-test 8 --data-dir " +
                        (tmp.path() / "data").string() + " --out-dir " + run.string(),
                    "env PATH=/nonexistent ");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: no plot will be drawn: "), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(run / "plot.png"));
  for (const char* name : {"history.csv", "summary.json", "model.pt", "mean.pt"}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(run / name)) << name;
  }
  // mean.pt is read by a plain torch.load, as export's NAME.mean.pt is.
  const std::string python = fmt::format(
      "{} -c \"import torch; m = torch.load('{}'); assert tuple(m.shape) == (3, 32, 32), "
      "m.shape\"",
      mgpu::testing::kPython, (run / "mean.pt").string());
  EXPECT_EQ(std::system(python.c_str()), 0) << python;
  r = run_mgpu("plot " + (run / "history.csv").string() + " --output " +
                   (tmp.path() / "p.png").string(),
               "env PATH=/nonexistent ");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot plot"), std::string::npos) << r.err;
}

TEST(CliBinary, PlotRedrawsFromHistory) {
  TempDir tmp;
  std::ofstream(tmp.path() / "h.csv") << "epoch,lr,seconds,loss,acc,val_loss,val_acc\n"
                                       << "1,0.005,60,1.9,0.3,1.7,0.4\n2,0.0025,60,1.5,0.45,1.4,0.5\n";
  auto r = run_mgpu("plot " + (tmp.path() / "h.csv").string() + " --output " +
                    (tmp.path() / "out" / "p.png").string());
  if (r.code == 1 && r.err.find("cannot plot") != std::string::npos) {
    GTEST_SKIP() << "this build or machine cannot plot: " << r.err;
  }
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_GT(std::filesystem::file_size(tmp.path() / "out" / "p.png"), 1000u);
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "out" / "p.png.tmp"));
  r = run_mgpu("plot " + (tmp.path() / "missing.csv").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("missing.csv"), std::string::npos) << r.err;
}

TEST(CliBinary, TwoProcessesOnLocalhostTrainTogetherAndOnlyRankZeroWrites) {
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 20);
  const std::string args = "train --gpus 0 --verbose 2 --epochs 1 --batch-per-device 8 --threads 1 "
                           "--limit-train 32 --limit-test 8 --comm-timeout 30 --data-dir " +
                           (tmp.path() / "data").string();
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                          std::to_string(mgpu::testing::free_port());
  const std::string cmd =
      "(RANK=1 " + env + " " + mgpu::testing::kMgpuBinary + " " + args + " --out-dir " +
      (tmp.path() / "r1").string() + " > " + (tmp.path() / "log1").string() + " 2>&1; echo $? > " +
      (tmp.path() / "rc1").string() + ") & RANK=0 " + env + " " + mgpu::testing::kMgpuBinary + " " +
      args + " --out-dir " + (tmp.path() / "r0").string() + " > " + (tmp.path() / "log0").string() +
      " 2>&1; rc=$?; wait; exit $rc";
  const int status = std::system(cmd.c_str());
  std::ifstream log0(tmp.path() / "log0"), rc1(tmp.path() / "rc1");
  const std::string text{std::istreambuf_iterator<char>(log0), std::istreambuf_iterator<char>()};
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << text;
  int rank1_code = -1;
  rc1 >> rank1_code;
  EXPECT_EQ(rank1_code, 0);
  EXPECT_NE(text.find("global batch 16 (2 replica(s)"), std::string::npos) << text;
  EXPECT_NE(text.find("processes: 2 (RANK/WORLD_SIZE), this is rank 0"), std::string::npos) << text;
  EXPECT_TRUE(std::filesystem::exists(tmp.path() / "r0" / "history.csv"));
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "r1"));
}

TEST(CliBinary, TwoProcessesUnderTorchrunJoinItsAgentsStore) {
  // torchrun's agent hosts the store at MASTER_PORT; the ranks join it rather than bind there.
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 20);
  const std::string cmd = fmt::format(
      "{} -m torch.distributed.run --nproc-per-node 2 --master-port {} --no-python {} train "
      "--gpus 0 --verbose 2 --epochs 1 --batch-per-device 8 --threads 1 --limit-train 32 "
      "--limit-test 8 --comm-timeout 60 --data-dir {} --out-dir {} > {} 2>&1",
      mgpu::testing::kPython, mgpu::testing::free_port(), mgpu::testing::kMgpuBinary,
      (tmp.path() / "data").string(), (tmp.path() / "run").string(),
      (tmp.path() / "log").string());
  const int status = std::system(cmd.c_str());
  std::ifstream log(tmp.path() / "log");
  const std::string text{std::istreambuf_iterator<char>(log), std::istreambuf_iterator<char>()};
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << text;
  EXPECT_NE(text.find("processes: 2 (torchrun), this is rank 0"), std::string::npos) << text;
  EXPECT_EQ(text.find("failed to bind"), std::string::npos) << text;
  EXPECT_TRUE(std::filesystem::exists(tmp.path() / "run" / "history.csv"));
}

TEST(CliBinary, ARankWhoseJobNeverAssemblesStopsWithinTheTimeout) {
  // Rank 1 of 2 with no rank 0 anywhere: exit 1 within --comm-timeout, naming the address, in
  // one line rather than c10d's backtrace of every attempt.
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 2);
  const int port = mgpu::testing::free_port();
  const auto start = std::chrono::steady_clock::now();
  const auto r = run_mgpu(
      fmt::format("train --gpus 0 --threads 1 --data-dir {} --comm-timeout 16 --out-dir {}",
                  (tmp.path() / "data").string(), (tmp.path() / "run").string()),
      fmt::format("RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={} ", port));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find(fmt::format("could not assemble the job at 127.0.0.1:{} within 16.0 s",
                                   port)),
            std::string::npos)
      << r.err;
  EXPECT_LT(seconds, 16 + 8) << "the timeout plus start-up";  // it took 1.8 times it
  EXPECT_EQ(r.err.find("frame #"), std::string::npos) << r.err;
}
