// Checkpoints in one process: names and pruning, fingerprints, exact resume after a stop
// mid-epoch (one or several replicas, micro-batches), refusals of checkpoints that do not fit,
// and non-finite losses that keep the last good checkpoint. test_checkpoint_binary.cpp runs
// `mgpu train` itself: kills, signals, several processes.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <csignal>
#include <fstream>

#include "Fixtures.h"
#include "data/Preprocess.h"
#include "models/Registry.h"
#include "train/files/Checkpoint.h"
#include "train/Signals.h"
#include "train/Trainer.h"

using namespace mgpu;
using mgpu::testing::same_weights;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;

namespace {

// 28x28 grey images of two classes (one-pixel stripes one way or the other) with noise.
data::Dataset stripe_set(int64_t n, uint64_t seed) {
  return mgpu::testing::pattern_dataset(n, seed, {/*classes=*/2, 1, 28, /*width=*/1, 40});
}

train::TrainConfig checkpoint_config(int64_t epochs = 2) {
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
  for (const char* other : {"ckpt-e9-s000000.pt", "ckpt-e0009-s00000x.pt",
                            "old-ckpt-e0009-s000000.pt", "ckpt-e0009_s000000.pt"}) {
    std::ofstream(tmp.path() / other) << "not a checkpoint's name";
  }
  EXPECT_EQ(train::latest_checkpoint(tmp.path())->filename(), "ckpt-e0002-s000000.pt");
  train::prune_checkpoints(tmp.path(), 1);
  EXPECT_EQ(mgpu::testing::list_dir(tmp.path()).size(), 7u);  // newest, one older, the others
  EXPECT_TRUE(fs::exists(train::checkpoint_path(tmp.path(), 1, 5)));
  EXPECT_FALSE(fs::exists(train::checkpoint_path(tmp.path(), 1, 0)));
}

TEST(Checkpoint, FingerprintDifferencesAreNamed) {
  EXPECT_EQ(train::fingerprint_difference(R"({"a": 1, "b": "x"})", R"({"a": 1, "b": "x"})"), "");
  EXPECT_EQ(train::fingerprint_difference(R"({"a": 1, "b": "x"})", R"({"a": 2, "b": "x"})"),
            "a: the checkpoint has 1, this run 2");
  EXPECT_EQ(train::fingerprint_difference(R"({"a": 1})", R"({"a": 1, "c": true})"),
            "c: the checkpoint has the default, this run true");
  EXPECT_EQ(train::fingerprint_difference(R"({"a": 1, "wd": 0.1})", R"({"a": 1})"),
            "wd: the checkpoint has 0.1, this run the default");
  EXPECT_EQ(train::fingerprint_difference(R"({"a": 1, "lr": 0.1})", R"({"a": 1})"), "");
  EXPECT_NE(train::fingerprint_difference("not json", R"({"a": 1})"), "");
}

// With several replicas, each holds batch-norm statistics of its own shards until the epoch's
// end: a mid-epoch checkpoint keeps every replica's, and a resume restores every replica's.
// With --accumulate K, each micro-batch's statistics are in the checkpoint too.
struct Split {
  std::string model;
  int replicas;
  int64_t accumulate;
  int64_t lookahead = 0;  // --lookahead: its averages (each micro-batch's statistics') resume too
};

class MidEpochResume : public ::testing::TestWithParam<Split> {};

TEST_P(MidEpochResume, AStopAndAResumeEndExactlyAsAnUninterruptedRun) {
  torch::set_num_threads(1);
  const auto [model, replicas, accumulate, lookahead] = GetParam();
  auto split_config = [accumulate = accumulate, lookahead = lookahead] {
    auto c = checkpoint_config();
    c.accumulate = accumulate;
    c.lookahead = lookahead;
    return c;
  };
  const auto d = stripe_set(48, 1);  // 6 steps per epoch with one replica, 3 with two
  TempDir tmp;
  std::ostringstream out;
  train::Progress quiet(0, out);

  auto whole = make_trainer(split_config(), d, tmp.path() / "whole", 0, replicas, model);
  const auto expected = whole->fit(d, d, quiet);

  // The stop request arrives during epoch 1's end; it is honoured after epoch 2's first step.
  train::install_stop_handlers();
  auto first = make_trainer(split_config(), d, tmp.path() / "parts", 0, replicas, model);
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

  auto second = make_trainer(split_config(), d, tmp.path() / "parts", 0, replicas, model);
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
                                           Split{"minigooglenet", 1, 2},
                                           Split{"minigooglenet", 1, 2, 2}),
                         [](const auto& info) {
                           return fmt::format("{}On{}ReplicasAccumulating{}{}", info.param.model,
                                              info.param.replicas, info.param.accumulate,
                                              info.param.lookahead ? "WithLookahead" : "");
                         });

TEST(Checkpoint, ACheckpointOfAnotherRunOrADamagedOneIsRefusedByName) {
  const auto d = stripe_set(16, 1);
  TempDir tmp;
  std::ostringstream out;
  train::Progress quiet(0, out);
  auto run = make_trainer(checkpoint_config(1), d, tmp.path());
  run->fit(d, d, quiet);
  const auto file = run->last_checkpoint();

  auto other = make_trainer(checkpoint_config(3), d, tmp.path() / "other");
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

  EXPECT_EQ(message.find('\n'), std::string::npos) << "one line, not miniz's paragraph";

  // One byte changed in the middle (inside a tensor, LibTorch's reader would not notice): the
  // checksum tells.
  fs::copy_file(file, tmp.path() / "flipped.pt");
  {
    std::fstream f(tmp.path() / "flipped.pt", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(size / 2));
    const char byte = static_cast<char>(f.get() ^ 0x01);
    f.seekp(static_cast<std::streamoff>(size / 2));
    f.put(byte);
  }
  message = mgpu::testing::error_of([&] { other->resume(tmp.path() / "flipped.pt"); });
  EXPECT_NE(message.find("checkpoint " + (tmp.path() / "flipped.pt").string() +
                         " is damaged: its contents do not match the checksum"),
            std::string::npos)
      << message;

  // Cut by a few bytes, or with bytes added, the archive still reads: its checksum tells.
  fs::copy_file(file, tmp.path() / "short.pt");
  fs::resize_file(tmp.path() / "short.pt", size - 5);
  fs::copy_file(file, tmp.path() / "long.pt");
  std::ofstream(tmp.path() / "long.pt", std::ios::app) << "extra\n";
  for (const auto* name : {"short.pt", "long.pt"}) {
    message = mgpu::testing::error_of([&] { other->resume(tmp.path() / name); });
    EXPECT_NE(message.find("checkpoint " + (tmp.path() / name).string() +
                           " is damaged: it does not end with the checksum"),
              std::string::npos)
        << message;
  }

  torch::save(torch::ones({3}), (tmp.path() / "tensor.pt").string());  // a valid archive
  message = mgpu::testing::error_of([&] { other->resume(tmp.path() / "tensor.pt"); });
  EXPECT_NE(message.find("is not an mgpu checkpoint"), std::string::npos) << message;
}

TEST(Checkpoint, ANonFiniteLossStopsAtItsStepAndKeepsTheLastGoodCheckpoint) {
  const auto d = stripe_set(48, 1);
  TempDir tmp;
  auto c = checkpoint_config();
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
