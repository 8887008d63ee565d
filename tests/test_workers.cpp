// Replica threads: one per replica for the whole run, the same in every epoch, evaluation,
// checkpoint and broadcast (cuDNN's autotuning cache is per thread), failures returned per
// replica.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>
#include <thread>

#include "Fixtures.h"
#include "data/Preprocess.h"
#include "train/Trainer.h"
#include "train/Teardown.h"
#include "train/Workers.h"
#include "train/comm/LocalGroup.h"

using namespace mgpu;

TEST(Workers, EachReplicaRunsOnOneThreadOfItsOwnEveryTime) {
  train::Workers workers(3);
  std::mutex mutex;
  std::map<size_t, std::set<std::thread::id>> seen;
  for (int call = 0; call < 5; ++call) {
    const auto errors = workers.run([&](size_t r) {
      std::lock_guard<std::mutex> lock(mutex);
      seen[r].insert(std::this_thread::get_id());
    });
    for (const auto& e : errors) EXPECT_FALSE(e);
  }
  ASSERT_EQ(seen.size(), 3u);
  std::set<std::thread::id> all;
  for (const auto& [r, ids] : seen) {
    EXPECT_EQ(ids.size(), 1u) << "replica " << r << " ran on " << ids.size() << " threads";
    all.insert(*ids.begin());
  }
  EXPECT_EQ(all.size(), 3u) << "two replicas shared a thread";
  EXPECT_EQ(*seen[0].begin(), std::this_thread::get_id()) << "replica 0 runs on the caller's";
}

TEST(Workers, EachFailureIsReturnedForItsReplicaAndTheThreadsGoOn) {
  train::Workers workers(3);
  const auto errors = workers.run([](size_t r) {
    if (r != 1) throw std::runtime_error("replica " + std::to_string(r));
  });
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_FALSE(errors[1]);
  for (size_t r : {0u, 2u}) {
    ASSERT_TRUE(errors[r]);
    try {
      std::rethrow_exception(errors[r]);
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "replica " + std::to_string(r));
    }
  }
  int ran = 0;
  std::mutex mutex;
  workers.run([&](size_t) {
    std::lock_guard<std::mutex> lock(mutex);
    ++ran;
  });
  EXPECT_EQ(ran, 3);
}

namespace {

// A communicator that records the thread of every collective its rank takes part in, and
// passes them on to the real one.
class ThreadRecorder : public train::Communicator {
 public:
  ThreadRecorder(std::unique_ptr<train::Communicator> inner, std::set<std::thread::id>* threads,
                 std::mutex* mutex)
      : inner_(std::move(inner)), threads_(threads), mutex_(mutex) {}
  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend() const override { return inner_->backend(); }
  std::unique_ptr<train::Work> all_reduce_sum_async(torch::Tensor tensor) override {
    record();
    return inner_->all_reduce_sum_async(tensor);
  }
  void broadcast(torch::Tensor& tensor, int root) override {
    record();
    inner_->broadcast(tensor, root);
  }
  void abort(const std::string& reason) override { inner_->abort(reason); }

 private:
  void record() {
    std::lock_guard<std::mutex> lock(*mutex_);
    threads_->insert(std::this_thread::get_id());
  }
  std::unique_ptr<train::Communicator> inner_;
  std::set<std::thread::id>* threads_;
  std::mutex* mutex_;
};

}  // namespace

// Every collective of a run (the first broadcast, each step's all-reduce, the evaluations'
// averages, the checkpoints' gathers) of each replica comes from one thread, over two epochs.
TEST(Workers, ATrainersReplicasKeepTheirThreadsAcrossEpochsEvaluationAndCheckpoints) {
  mgpu::testing::TempDir tmp;
  constexpr int kReplicas = 3;
  std::mutex mutex;
  std::vector<std::set<std::thread::id>> threads(kReplicas);
  auto local = train::make_local_group(kReplicas, std::chrono::milliseconds(60000));
  std::vector<std::unique_ptr<train::Communicator>> comms;
  for (int r = 0; r < kReplicas; ++r) {
    comms.push_back(std::make_unique<ThreadRecorder>(std::move(local[r]), &threads[r], &mutex));
  }
  train::TrainConfig config = mgpu::testing::stripes_config();  // 2 epochs
  config.batch_per_device = 4;
  const auto& data = mgpu::testing::stripes();
  std::vector<torch::Device> devices(kReplicas, torch::kCPU);
  train::Trainer trainer(config, torch::nn::AnyModule(mgpu::testing::SmallNet()), devices,
                         data::mean_image(data.images), std::move(comms));
  train::CheckpointPolicy checkpoints;
  checkpoints.dir = tmp.path() / "checkpoints";
  checkpoints.every_steps = 2;
  checkpoints.writer = true;
  checkpoints.fingerprint = "{}";
  trainer.set_checkpoints(checkpoints);
  std::ostringstream out;
  train::Progress progress(0, out);
  trainer.fit(data, data.first(8), progress);
  ASSERT_TRUE(train::latest_checkpoint(checkpoints.dir)) << "no checkpoint was written";
  std::set<std::thread::id> all;
  for (int r = 0; r < kReplicas; ++r) {
    EXPECT_EQ(threads[r].size(), 1u) << "replica " << r << " ran on " << threads[r].size()
                                     << " threads";
    if (!threads[r].empty()) all.insert(*threads[r].begin());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kReplicas));
}

namespace {

// Stand-ins for a replica's CUDA graph and NCCL communicator: the communicator refuses (as
// NCCL's destroy and abort do, by waiting forever) to go while any graph lives.
struct Ledger {
  int live_graphs = 0;
  std::vector<std::string> events;
};
struct FakeGraph {
  FakeGraph(Ledger* l, int r) : ledger(l), rank(r) { ++ledger->live_graphs; }
  ~FakeGraph() {
    --ledger->live_graphs;
    ledger->events.push_back("graph " + std::to_string(rank));
  }
  Ledger* ledger;
  int rank;
};
struct FakeComm {
  ~FakeComm() {
    ledger->events.push_back(ledger->live_graphs > 0
                                 ? "comm " + std::to_string(rank) + " destroyed while a graph lives"
                                 : "comm " + std::to_string(rank));
  }
  Ledger* ledger;
  int rank;
};
struct FakeReplica {
  std::unique_ptr<FakeGraph> graph;
  std::unique_ptr<FakeComm> comm;
};

}  // namespace

// The teardown the Trainer runs (its destructor, after a run or a failure) destroys every
// replica's graph before any communicator: the order in which NCCL cannot hang.
TEST(Teardown, EveryGraphGoesBeforeAnyCommunicator) {
  Ledger ledger;
  std::vector<std::unique_ptr<FakeReplica>> replicas;
  for (int r = 0; r < 3; ++r) {
    auto replica = std::make_unique<FakeReplica>();
    replica->graph = std::make_unique<FakeGraph>(&ledger, r);
    replica->comm.reset(new FakeComm{&ledger, r});
    replicas.push_back(std::move(replica));
  }
  replicas[1]->graph.reset();  // a replica that never captured (or already dropped its graph)
  ledger.events.clear();
  train::release_graphs_then_communicators(replicas);
  EXPECT_EQ(ledger.events,
            (std::vector<std::string>{"graph 0", "graph 2", "comm 0", "comm 1", "comm 2"}));
  EXPECT_EQ(ledger.live_graphs, 0);
}
