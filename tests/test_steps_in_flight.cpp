// The bound on the steps a replica queues ahead of its device (kStepsInFlight, train/Trainer.h):
// with a peer that never answers, the host stops queueing after that many steps and every rank
// fails with the communication error within the deadline, instead of blocking in a launch.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <sstream>
#include <thread>

#include "Fixtures.h"
#include "data/Preprocess.h"
#include "train/comm/LocalGroup.h"

using namespace mgpu;
using namespace mgpu::train;
using Clock = std::chrono::steady_clock;

namespace {

constexpr double kDeadlineS = 1.0;

// What the stand-in ranks of one group share: the first failure, and per rank the steps it
// queued and when its wait failed.
struct StalledGroup {
  std::atomic<bool> aborted{false};
  std::mutex mutex;
  std::string reason;
  int steps_queued[2] = {0, 0};
  bool failed[2] = {false, false};
  double failed_after_s[2] = {0, 0};
  Clock::time_point started = Clock::now();
};

// A collective queued on the device: the host goes on at once (NCCL's wait() only makes the
// stream wait), and it never finishes.
class NeverFinishes : public Work {
 public:
  void wait() override {}
  bool test() override { return false; }
  std::string error() const override { return {}; }
};

// One rank of a GPU group behind a dead peer, as NcclGroup behaves: the step's all-reduces are
// queued and never finish, so nothing queued after them does; a wait for a mark polls the
// group's failure and the deadline. The blocking collectives before the first step (the
// weights' broadcast) pass to a real local group.
class StalledRank : public Communicator {
 public:
  StalledRank(std::unique_ptr<Communicator> inner, StalledGroup* group)
      : inner_(std::move(inner)), group_(group) {}
  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend() const override { return "stalled"; }
  std::unique_ptr<Work> all_reduce_sum_async(torch::Tensor) override {
    return std::make_unique<NeverFinishes>();
  }
  void all_reduce_sum(torch::Tensor& t) override { inner_->all_reduce_sum(t); }
  void broadcast(torch::Tensor& t, int root) override { inner_->broadcast(t, root); }
  void abort(const std::string& reason) override {
    std::lock_guard<std::mutex> lock(group_->mutex);
    if (group_->reason.empty()) group_->reason = reason;
    group_->aborted = true;
  }
  std::shared_ptr<QueueMark> mark_enqueued(const char*) override {
    std::lock_guard<std::mutex> lock(group_->mutex);
    ++group_->steps_queued[rank()];
    return std::make_shared<QueueMark>();
  }
  void wait_for_mark(const QueueMark&) override {
    const auto deadline = Clock::now() + std::chrono::duration<double>(kDeadlineS);
    while (!group_->aborted && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const std::string why = group_->aborted ? "aborted" : "timed out waiting for its peers";
    {
      std::lock_guard<std::mutex> lock(group_->mutex);
      group_->failed[rank()] = true;
      group_->failed_after_s[rank()] =
          std::chrono::duration<double>(Clock::now() - group_->started).count();
    }
    const std::string message = fmt::format("rank {}: the training step {}", rank(), why);
    abort(message);
    throw CommError(message);
  }

 private:
  std::unique_ptr<Communicator> inner_;
  StalledGroup* group_;
};

}  // namespace

TEST(StepsInFlight, RunAheadIsBoundedAndEveryRankFailsWithinTheDeadlineBehindADeadPeer) {
  StalledGroup group;
  auto local = make_local_group(2, std::chrono::seconds(60));
  std::vector<std::unique_ptr<Communicator>> comms;
  for (auto& c : local) comms.push_back(std::make_unique<StalledRank>(std::move(c), &group));
  TrainConfig config = mgpu::testing::stripes_config();
  config.batch_per_device = 2;  // 48 images, 2 replicas: 12 steps an epoch
  const auto& data = mgpu::testing::stripes();
  Trainer trainer(config, torch::nn::AnyModule(mgpu::testing::SmallNet()),
                  std::vector<torch::Device>(2, torch::kCPU), data::mean_image(data.images),
                  std::move(comms));
  std::ostringstream out;
  Progress progress(0, out);
  group.started = Clock::now();
  EXPECT_THROW(trainer.fit(data, data.first(8), progress), CommError)
      << "the run went on with every step's all-reduce unfinished";
  for (int r = 0; r < 2; ++r) {
    EXPECT_GE(group.steps_queued[r], 1) << "rank " << r;
    EXPECT_LE(group.steps_queued[r], static_cast<int>(kStepsInFlight))
        << "rank " << r << " queued more steps than the bound before it waited";
    EXPECT_TRUE(group.failed[r]) << "rank " << r << " did not fail in its wait";
    EXPECT_LT(group.failed_after_s[r], kDeadlineS + 5) << "rank " << r;
  }
}
