// The command line of the commands beside train: mgpu bench (its lists, speed flags, tables and
// refusals), models, evaluate, predict and export (exit code 2 and a message naming the flag).
#include <gtest/gtest.h>

#include <fstream>

#include "Fixtures.h"
#include "app/Cli.h"
#include "app/commands/Bench.h"
#include "app/commands/Evaluate.h"
#include "app/commands/Export.h"
#include "app/commands/Predict.h"

using mgpu::app::BenchConfig;
using mgpu::app::Command;
using mgpu::app::EvaluateConfig;
using mgpu::app::ExportConfig;
using mgpu::app::PredictConfig;
using mgpu::train::TrainConfig;
using mgpu::app::parse_command_line;
using mgpu::testing::TempDir;
using mgpu::testing::run_mgpu;
using mgpu::testing::refusal;

TEST(Cli, BenchLists) {
  auto cmd = parse_command_line({"mgpu", "bench", "--gpus", "1,2,4", "--steps", "7"});
  ASSERT_EQ(cmd.name, "bench");
  EXPECT_TRUE(cmd.as<BenchConfig>().gpus);
  EXPECT_EQ(cmd.as<BenchConfig>().replicas, (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(cmd.as<BenchConfig>().steps, 7);
  cmd = parse_command_line({"mgpu", "bench"});
  EXPECT_FALSE(cmd.as<BenchConfig>().gpus);
  EXPECT_EQ(cmd.as<BenchConfig>().replicas, (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(cmd.as<BenchConfig>().levels.empty());
  cmd = parse_command_line({"mgpu", "bench", "--levels", "all"});  // one replica by default
  EXPECT_EQ(cmd.as<BenchConfig>().replicas, (std::vector<int64_t>{1}));
  EXPECT_EQ(cmd.as<BenchConfig>().levels.size(), 4u);  // no cuda-graphs without --gpus
}

TEST(Cli, SpeedFlags) {
  // The CPU's default is its fastest exact path, channels-last (docs/benchmarks.md); each
  // default has its off switch, and a GPU keeps the plain path until it is measured there.
  auto c = parse_command_line({"mgpu", "train", "--gpus", "0"}).as<TrainConfig>();
  EXPECT_EQ(c.amp, "off");
  EXPECT_TRUE(c.channels_last);
  EXPECT_FALSE(c.fused_sgd || c.cuda_graphs);
  EXPECT_TRUE(c.cudnn_benchmark && c.tf32);
  EXPECT_FALSE(parse_command_line({"mgpu", "train", "--gpus", "0", "--no-channels-last"})
                   .as<TrainConfig>()
                   .channels_last);
  EXPECT_FALSE(parse_command_line({"mgpu", "train", "--gpus", "1"}).as<TrainConfig>().channels_last);
  EXPECT_TRUE(parse_command_line({"mgpu", "bench", "--cpu-replicas", "1"})
                  .as<BenchConfig>()
                  .train.channels_last);
  EXPECT_FALSE(parse_command_line({"mgpu", "bench", "--cpu-replicas", "1", "--no-channels-last"})
                   .as<BenchConfig>()
                   .train.channels_last);
  EXPECT_NE(refusal({"train", "--channels-last", "--no-channels-last"})
                .find("--channels-last and --no-channels-last: give one of them"),
            std::string::npos);
  c = parse_command_line({"mgpu", "train", "--gpus", "0", "--amp", "bf16", "--channels-last",
                          "--fused-sgd", "--no-cudnn-benchmark", "--no-tf32"})
          .as<TrainConfig>();
  EXPECT_EQ(c.amp, "bf16");
  EXPECT_TRUE(c.channels_last && c.fused_sgd);
  EXPECT_FALSE(c.cudnn_benchmark || c.tf32);
  auto b = parse_command_line({"mgpu", "bench", "--gpus", "1", "--cuda-graphs"}).as<BenchConfig>();
  EXPECT_TRUE(b.train.cuda_graphs && b.train.fused_sgd);  // graphs need the fused optimizer
}

TEST(CliBinary, BenchComparesReplicaCountsAndWritesATable) {
  TempDir tmp;
  auto r = run_mgpu("bench --cpu-replicas 1,2 --steps 2 --warmup 0 --batch-per-device 4 "
                    "--threads 2 --out-dir " + tmp.path().string());
  EXPECT_EQ(r.code, 0) << r.err;
  std::ifstream csv(tmp.path() / "bench.csv");
  std::string header, one, two, extra;
  std::getline(csv, header);
  std::getline(csv, one);
  std::getline(csv, two);
  EXPECT_EQ(header, "level,replicas,global_batch,ms_per_step,images_per_second,seconds_per_epoch,"
                    "tflops,peak_memory_mib,speedup,efficiency,gradient_floats,allreduce_ms,"
                    "median_step_ms,backward_ms,no_overlap_ms,hidden");
  EXPECT_EQ(one.rfind(",1,4,", 0), 0u) << one;
  EXPECT_EQ(two.rfind(",2,8,", 0), 0u) << two;
  // The all-reduce of MiniGoogLeNet's whole gradient buffer is timed for each configuration
  // (with one replica it moves nothing, so only two replicas must take measurable time).
  for (const auto& line : {one, two}) ASSERT_NE(line.find(",1651114,"), std::string::npos) << line;
  EXPECT_GT(std::stod(two.substr(two.find(",1651114,") + 9)), 0.0) << two;
  EXPECT_EQ(std::stod(one.substr(one.find(",1651114,") + 9)), 0.0) << one << ": it moves nothing";
  EXPECT_FALSE(std::getline(csv, extra));
}

TEST(CliBinary, BenchLevelsTimeEachSwitchInOneRun) {
  TempDir tmp;
  auto r = run_mgpu("bench --levels all --steps 1 --warmup 1 --batch-per-device 4 --threads 1 "
                    "--out-dir " + tmp.path().string());
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("1.408 GFLOP per training image"), std::string::npos) << r.out;
  std::ifstream csv(tmp.path() / "bench.csv");
  std::string line;
  std::getline(csv, line);
  std::vector<std::string> levels;
  while (std::getline(csv, line)) {
    levels.push_back(line.substr(0, line.find(',')));
    const auto fields = line.substr(line.find(',') + 1);
    EXPECT_EQ(fields.rfind("1,4,", 0), 0u) << line;
    // TFLOP/s is images/s times the training FLOPs; no GPU memory on the CPU.
    double ms = 0, ips = 0, epoch = 0, tflops = 0, peak = 0;
    ASSERT_EQ(std::sscanf(fields.c_str(), "1,4,%lf,%lf,%lf,%lf,%lf", &ms, &ips, &epoch, &tflops,
                          &peak), 5) << line;
    EXPECT_NEAR(tflops, ips * 1.408e9 / 1e12, 1e-3 * tflops + 1e-4) << line;
    EXPECT_EQ(peak, -1.0);
  }
  EXPECT_EQ(levels, (std::vector<std::string>{"fp32", "channels-last", "bf16", "fused-sgd"}));
}

TEST(CliBinary, BenchRefusesMoreGpusThanVisible) {
  if (torch::cuda::device_count() >= 4) GTEST_SKIP() << "four GPUs are visible";
  auto r = run_mgpu("bench --gpus 4");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--gpus 4 asks for 4 GPU(s) but"), std::string::npos) << r.err;
}

TEST(CliBinary, AGpuAskedForWithoutOneIsRefused) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible";
  auto r = run_mgpu("train --gpus 1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--gpus 1 asks for 1 GPU(s) but none is visible"), std::string::npos)
      << r.err;
  r = run_mgpu("train --gpus 4");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--gpus 4 asks for 4 GPU(s) but none is visible"), std::string::npos)
      << r.err;
}

TEST(CliBinary, NcclWithoutAGpuIsRefused) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible";
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 2);
  auto r = run_mgpu("train --gpus 0 --comm nccl --data-dir " + (tmp.path() / "data").string() +
                    " --out-dir " + (tmp.path() / "run").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--comm nccl needs GPUs (--gpus 1 or more)"), std::string::npos) << r.err;
}

TEST(Cli, ModelsEvaluatePredictAndExportAreRead) {
  EXPECT_EQ(parse_command_line({"mgpu", "train", "--gpus", "0"}).as<TrainConfig>().model, "minigooglenet");
  EXPECT_EQ(parse_command_line({"mgpu", "train", "--gpus", "0", "--model", "resnet20"}).as<TrainConfig>().model,
            "resnet20");
  EXPECT_EQ(parse_command_line({"mgpu", "bench", "--model", "resnet20"}).as<BenchConfig>().train.model,
            "resnet20");
  EXPECT_EQ(parse_command_line({"mgpu", "models"}).name, "models");

  const Command eval = parse_command_line({"mgpu", "evaluate", "--weights", "run", "--gpus", "0",
                                           "--limit-test", "100", "--batch", "50", "--out-dir",
                                           "e", "--dataset", "cifar10", "--no-download"});
  ASSERT_EQ(eval.name, "evaluate");
  EXPECT_EQ(eval.as<EvaluateConfig>().weights, "run");
  EXPECT_EQ(eval.as<EvaluateConfig>().data.limit_test, 100);
  EXPECT_EQ(eval.as<EvaluateConfig>().batch, 50);
  EXPECT_EQ(eval.as<EvaluateConfig>().out_dir, "e");
  EXPECT_EQ(eval.as<EvaluateConfig>().data.dataset, "cifar10");
  EXPECT_FALSE(eval.as<EvaluateConfig>().data.download);
  EXPECT_EQ(parse_command_line({"mgpu", "evaluate", "--weights", "w", "--gpus", "0"})
                .as<EvaluateConfig>().data.dataset,
            "auto");

  const Command predict = parse_command_line(
      {"mgpu", "predict", "--weights", "w.pt", "--gpus", "0", "--top", "5", "a.png", "b.jpg"});
  ASSERT_EQ(predict.name, "predict");
  EXPECT_EQ(predict.as<PredictConfig>().top, 5);
  EXPECT_EQ(predict.as<PredictConfig>().images, (std::vector<std::string>{"a.png", "b.jpg"}));

  const Command exp = parse_command_line({"mgpu", "export", "--weights", "w.pt", "--to", "m.pt"});
  ASSERT_EQ(exp.name, "export");
  EXPECT_EQ(exp.as<ExportConfig>().weights, "w.pt");
  EXPECT_EQ(exp.as<ExportConfig>().to, "m.pt");
  EXPECT_EQ(exp.as<ExportConfig>().threads, 0);
  EXPECT_EQ(parse_command_line({"mgpu", "export", "--weights", "w.pt", "--to", "m.pt", "--threads", "3"})
                .as<ExportConfig>()
                .threads,
            3);
}

TEST(Cli, ModelsEvaluatePredictAndExportRefusalsNameTheProblem) {
  EXPECT_NE(refusal({"train", "--gpus", "0", "--model", "vgg"}).find("unknown model 'vgg'"),
            std::string::npos);
  EXPECT_NE(refusal({"evaluate", "--gpus", "0"}).find("give --weights"), std::string::npos);
  EXPECT_NE(refusal({"evaluate", "--weights", "w", "--gpus", "2"}).find("--gpus 2"),
            std::string::npos);
  EXPECT_NE(refusal({"evaluate", "--weights", "w", "--gpus", "0", "--batch", "0"}).find("--batch"),
            std::string::npos);
  EXPECT_NE(refusal({"evaluate", "--weights", "w", "--gpus", "0", "--dataset", "mnist"})
                .find("--dataset 'mnist'"),
            std::string::npos);
  EXPECT_NE(refusal({"predict", "--weights", "w", "--gpus", "0"}).find("name one or more image"),
            std::string::npos);
  EXPECT_NE(refusal({"predict", "--weights", "w", "--gpus", "0", "--top", "0", "a.png"})
                .find("--top 0"),
            std::string::npos);
  EXPECT_NE(refusal({"export", "--weights", "w"}).find("give --to"), std::string::npos);
  EXPECT_NE(refusal({"export", "--to", "m.pt"}).find("give --weights"), std::string::npos);
  EXPECT_NE(refusal({"export", "--weights", "w", "--to", "m.pt", "--threads", "-1"}).find("--threads -1"),
            std::string::npos);
  EXPECT_NE(refusal({"models", "--all"}).find("mgpu models: Option"), std::string::npos);
}

TEST(CliBinary, ModelsListsEveryRegisteredModel) {
  TempDir tmp;
  const std::string cmd =
      std::string(mgpu::testing::kMgpuBinary) + " models > " + (tmp.path() / "out").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in(tmp.path() / "out");
  const std::string out{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_NE(out.find("minigooglenet         1651114"), std::string::npos) << out;
  EXPECT_NE(out.find("resnet20               269722"), std::string::npos) << out;
}
