// Checkpoints: names and pruning, exact resume after a stop or a SIGKILL, signals, refusals of
// checkpoints that do not fit, and non-finite losses that keep the last good checkpoint.
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
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "Fixtures.h"
#include "data/Preprocess.h"
#include "models/Registry.h"
#include "train/files/Checkpoint.h"
#include "train/Signals.h"
#include "train/Trainer.h"
#include "train/files/Weights.h"

using namespace mgpu;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;

extern char** environ;

namespace {

// 28x28 grey images of two classes (one-pixel stripes one way or the other) with noise.
data::Dataset stripes(int64_t n, uint64_t seed) {
  return mgpu::testing::pattern_dataset(n, seed, {/*classes=*/2, 1, 28, /*width=*/1, 40});
}

train::TrainConfig config(int64_t epochs = 2) {
  train::TrainConfig c;
  c.batch_per_device = 8;
  c.eval_batch = 32;
  c.epochs = epochs;
  c.verbose = 0;
  c.seed = 5;
  return c;
}

// A trainer with a fresh shipped model (MiniGoogLeNet by default) seeded as run_training seeds
// it, on `replicas` CPU replicas.
std::unique_ptr<train::Trainer> make_trainer(const train::TrainConfig& c, const data::Dataset& d,
                                             const fs::path& dir, int64_t every = 0,
                                             int replicas = 1,
                                             const std::string& model = "minigooglenet") {
  torch::manual_seed(c.seed);
  auto net = models::make_model(model, {1, 28, 28, /*classes=*/2});
  auto trainer = std::make_unique<train::Trainer>(
      c, net, std::vector<torch::Device>(replicas, torch::kCPU), data::mean_image(d.images));
  train::CheckpointPolicy policy;
  policy.dir = dir;
  policy.every_steps = every;
  policy.fingerprint = fmt::format(R"({{"epochs": {}, "seed": {}}})", c.epochs, c.seed);
  trainer->set_checkpoints(policy);
  return trainer;
}

// Every parameter and buffer of two models, bit for bit.
bool same_weights(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  auto ba = a.named_buffers(), bb = b.named_buffers();
  if (pa.size() != pb.size() || ba.size() != bb.size()) return false;
  for (const auto& item : pa) {
    if (!torch::equal(item.value(), pb[item.key()])) return false;
  }
  for (const auto& item : ba) {
    if (!torch::equal(item.value(), bb[item.key()])) return false;
  }
  return true;
}

std::string history_without_seconds(const train::History& h) {
  std::string text;
  for (const auto& e : h) {
    text += fmt::format("{} {} {} {} {} {}\n", e.epoch, e.lr, e.loss, e.acc, e.val_loss, e.val_acc);
  }
  return text;
}

}  // namespace

TEST(Checkpoint, NamesSortInTrainingOrderAndOldOnesArePruned) {
  TempDir tmp;
  EXPECT_EQ(train::checkpoint_path(tmp.path(), 3, 120).filename(), "ckpt-e0003-s000120.pt");
  EXPECT_FALSE(train::latest_checkpoint(tmp.path()));
  for (auto [e, s] : {std::pair{0, 5}, {1, 0}, {1, 5}, {2, 0}}) {
    std::ofstream(train::checkpoint_path(tmp.path(), e, s)) << "x";
  }
  std::ofstream(tmp.path() / "ckpt-e0009-s000000.pt.tmp") << "half-written";  // never chosen
  EXPECT_EQ(train::latest_checkpoint(tmp.path())->filename(), "ckpt-e0002-s000000.pt");
  train::prune_checkpoints(tmp.path(), 1);
  EXPECT_EQ(mgpu::testing::list_dir(tmp.path()).size(), 3u);  // newest, one older, the .tmp
  EXPECT_TRUE(fs::exists(train::checkpoint_path(tmp.path(), 1, 5)));
  EXPECT_FALSE(fs::exists(train::checkpoint_path(tmp.path(), 1, 0)));
}

TEST(Checkpoint, FingerprintDifferencesAreNamed) {
  EXPECT_EQ(train::fingerprint_difference(R"({"a": 1, "b": "x"})", R"({"a": 1, "b": "x"})"), "");
  EXPECT_EQ(train::fingerprint_difference(R"({"a": 1, "b": "x"})", R"({"a": 2, "b": "x"})"),
            "a: the checkpoint has 1, this run 2");
  EXPECT_EQ(train::fingerprint_difference(R"({"a": 1})", R"({"a": 1, "c": true})"),
            "c: the checkpoint has nothing, this run true");
  EXPECT_NE(train::fingerprint_difference("not json", R"({"a": 1})"), "");
}

// With several replicas, each holds batch-norm statistics of its own shards until the epoch's
// end: a mid-epoch checkpoint keeps every replica's, and a resume restores every replica's.
// With --accumulate K, each micro-batch's statistics are in the checkpoint too.
struct Split {
  std::string model;
  int replicas;
  int64_t accumulate;
};

class MidEpochResume : public ::testing::TestWithParam<Split> {};

TEST_P(MidEpochResume, AStopAndAResumeEndExactlyAsAnUninterruptedRun) {
  torch::set_num_threads(1);
  const auto [model, replicas, accumulate] = GetParam();
  auto config = [accumulate = accumulate] {
    auto c = ::config();
    c.accumulate = accumulate;
    return c;
  };
  const auto d = stripes(48, 1);  // 6 steps per epoch with one replica, 3 with two
  TempDir tmp;
  std::ostringstream out;
  train::Progress quiet(0, out);

  auto whole = make_trainer(config(), d, tmp.path() / "whole", 0, replicas, model);
  const auto expected = whole->fit(d, d, quiet);

  // The stop request arrives during epoch 1's end; it is honoured after epoch 2's first step.
  train::install_stop_handlers();
  auto first = make_trainer(config(), d, tmp.path() / "parts", 0, replicas, model);
  try {
    first->fit(d, d, quiet, [](const train::History&) { std::raise(SIGUSR1); });
    FAIL() << "no stop";
  } catch (const train::StopRequested& e) {
    EXPECT_NE(std::string(e.what()).find("stopped by SIGUSR1 in epoch 2 after step 1"),
              std::string::npos)
        << e.what();
  }
  train::clear_stop_request();
  EXPECT_EQ(first->last_checkpoint().filename(), "ckpt-e0001-s000001.pt");
  if (replicas > 1) {  // the replicas' statistics differ at the stop: the case to get right
    EXPECT_FALSE(same_weights(*first->model(0).ptr(), *first->model(1).ptr()));
  }
  const int64_t steps = 48 / (8 * replicas * accumulate);
  ASSERT_GE(steps, 2) << "the stop must come mid-epoch";

  auto second = make_trainer(config(), d, tmp.path() / "parts", 0, replicas, model);
  second->resume(first->last_checkpoint());
  const auto resumed = second->fit(d, d, quiet);
  EXPECT_EQ(history_without_seconds(resumed), history_without_seconds(expected));
  for (int r = 0; r < replicas; ++r) {  // every parameter and buffer of every replica
    EXPECT_TRUE(same_weights(*second->model(r).ptr(), *whole->model(r).ptr())) << "replica " << r;
  }
  // A checkpoint does not change the run: the uninterrupted one wrote only epoch ends.
  EXPECT_EQ(whole->last_checkpoint().filename(), "ckpt-e0002-s000000.pt");
}

INSTANTIATE_TEST_SUITE_P(Checkpoint, MidEpochResume,
                         ::testing::Values(Split{"minigooglenet", 1, 1},
                                           Split{"minigooglenet", 2, 1},
                                           Split{"resnet20", 2, 1},
                                           Split{"minigooglenet", 1, 2}),
                         [](const auto& info) {
                           return fmt::format("{}On{}ReplicasAccumulating{}", info.param.model,
                                              info.param.replicas, info.param.accumulate);
                         });

TEST(Checkpoint, ACheckpointOfAnotherRunOrADamagedOneIsRefusedByName) {
  const auto d = stripes(16, 1);
  TempDir tmp;
  std::ostringstream out;
  train::Progress quiet(0, out);
  auto run = make_trainer(config(1), d, tmp.path());
  run->fit(d, d, quiet);
  const auto file = run->last_checkpoint();

  auto other = make_trainer(config(3), d, tmp.path() / "other");
  auto message = mgpu::testing::error_of([&] { other->resume(file); });
  EXPECT_NE(message.find("is from another run"), std::string::npos) << message;
  EXPECT_NE(message.find("epochs: the checkpoint has 1, this run 3"), std::string::npos) << message;

  const auto size = fs::file_size(file);
  fs::copy_file(file, tmp.path() / "cut.pt");
  fs::resize_file(tmp.path() / "cut.pt", size / 2);
  message = mgpu::testing::error_of([&] { other->resume(tmp.path() / "cut.pt"); });
  EXPECT_NE(message.find("checkpoint " + (tmp.path() / "cut.pt").string() + " cannot be read"),
            std::string::npos)
      << message;

  torch::save(torch::ones({3}), (tmp.path() / "tensor.pt").string());  // a valid archive
  message = mgpu::testing::error_of([&] { other->resume(tmp.path() / "tensor.pt"); });
  EXPECT_NE(message.find("is not an mgpu checkpoint"), std::string::npos) << message;
}

TEST(Checkpoint, ANonFiniteLossStopsAtItsStepAndKeepsTheLastGoodCheckpoint) {
  const auto d = stripes(48, 1);
  TempDir tmp;
  auto c = config();
  c.lr = 1e12;  // the first step is finite, the weights it leaves are not
  std::ostringstream out;
  train::Progress quiet(0, out);
  auto run = make_trainer(c, d, tmp.path(), /*every=*/1);
  try {
    run->fit(d, d, quiet);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("non-finite in epoch 1 at step 2"), std::string::npos) << what;
    // Step 1's checkpoint holds the weights that gave step 2's loss: no use resuming it.
    EXPECT_NE(what.find("The newest checkpoint, " +
                        train::checkpoint_path(tmp.path(), 0, 1).string() +
                        ", holds the weights that gave it"),
              std::string::npos)
        << what;
  }
  EXPECT_EQ(train::latest_checkpoint(tmp.path())->filename(), "ckpt-e0000-s000001.pt");
}

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
  const pid_t pid = start_training(data, tmp.path() / "run", tmp.path() / "log");
  wait_for_first_checkpoint(tmp.path() / "run");
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
  const pid_t pid = start_training(data, tmp.path() / "run", tmp.path() / "log");
  wait_for_first_checkpoint(tmp.path() / "run");
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
  std::smatch m;
  const auto log0 = read_file(tmp.path() / "log0"), log1 = read_file(tmp.path() / "log1");
  ASSERT_TRUE(std::regex_search(log0, m, std::regex("non-finite in epoch 1 at step (\\d+)"))) << logs();
  const int bad = std::stoi(m[1]);
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
