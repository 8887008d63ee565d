// The in-process communicator: sums, broadcasts, and errors instead of hangs.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "data/InputError.h"
#include "train/comm/LocalGroup.h"
#include "train/comm/NcclGroup.h"
#include "train/Sharding.h"

using namespace mgpu::train;
using namespace std::chrono_literals;

namespace {

// Runs f(rank) on one thread per communicator; returns each rank's error text ("" if none).
std::vector<std::string> on_threads(std::vector<std::unique_ptr<Communicator>>& group,
                                    const std::function<void(Communicator&)>& f) {
  std::vector<std::string> errors(group.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < group.size(); ++r) {
    threads.emplace_back([&, r] {
      try {
        f(*group[r]);
      } catch (const CommError& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace

TEST(LocalGroup, RankRContributesRPlusOneAndEveryoneSeesTheSum) {
  for (int n : {1, 2, 3, 4}) {
    auto group = make_local_group(n, 10s);
    std::vector<torch::Tensor> results(n);
    on_threads(group, [&](Communicator& c) {
      auto t = torch::full({5, 3}, static_cast<float>(c.rank() + 1));
      c.all_reduce_sum(t);
      c.all_reduce_sum(t);  // twice: the group is reusable
      results[c.rank()] = t;
    });
    const float sum = n * (n + 1) / 2.0f;
    for (int r = 0; r < n; ++r) {
      EXPECT_TRUE(torch::equal(results[r], torch::full({5, 3}, sum * n))) << "n=" << n << " r=" << r;
    }
  }
}

TEST(LocalGroup, IntegerTensorsToo) {
  auto group = make_local_group(3, 10s);
  std::vector<int64_t> got(3);
  on_threads(group, [&](Communicator& c) {
    auto t = torch::tensor(int64_t{10} * (c.rank() + 1));
    c.all_reduce_sum(t);
    got[c.rank()] = t.item<int64_t>();
  });
  EXPECT_EQ(got, (std::vector<int64_t>{60, 60, 60}));
}

TEST(LocalGroup, BroadcastCopiesTheRootsTensor) {
  auto group = make_local_group(3, 10s);
  std::vector<torch::Tensor> results(3);
  on_threads(group, [&](Communicator& c) {
    auto t = torch::full({4}, static_cast<float>(10 * c.rank()));
    c.broadcast(t, /*root=*/2);
    results[c.rank()] = t;
  });
  for (const auto& t : results) EXPECT_TRUE(torch::equal(t, torch::full({4}, 20.0f)));
}

TEST(LocalGroup, APeerThatNeverArrivesIsAnErrorWithinTheTimeout) {
  auto group = make_local_group(3, 300ms);
  const auto start = std::chrono::steady_clock::now();
  const auto errors = on_threads(group, [&](Communicator& c) {
    if (c.rank() == 2) return;  // never joins
    auto t = torch::ones({2});
    c.all_reduce_sum(t);
  });
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_LT(waited, 5s);
  EXPECT_NE(errors[0].find("all_reduce"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0] + errors[1], "");
  const std::string all = errors[0] + errors[1];
  EXPECT_NE(all.find("waiting for rank(s) 2"), std::string::npos) << all;
  EXPECT_EQ(errors[2], "");
}

TEST(LocalGroup, AbortWakesPeersAtOnce) {
  auto group = make_local_group(2, 60s);
  const auto start = std::chrono::steady_clock::now();
  const auto errors = on_threads(group, [&](Communicator& c) {
    if (c.rank() == 1) {
      std::this_thread::sleep_for(50ms);
      c.abort("rank 1 failed: the training loss became nan");
      return;
    }
    auto t = torch::ones({2});
    c.all_reduce_sum(t);
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_NE(errors[0].find("rank 0: all_reduce aborted: rank 1 failed"), std::string::npos)
      << errors[0];
}

TEST(Sharding, ShardsCoverTheBatchExactlyOnce) {
  for (int64_t batch : {1, 7, 64, 100, 257}) {
    for (int64_t parts : {1, 2, 3, 4, 8}) {
      const auto shards = shard_batch(batch, parts);
      ASSERT_EQ(static_cast<int64_t>(shards.size()), parts);
      int64_t next = 0, smallest = batch, largest = 0;
      for (const auto& s : shards) {
        EXPECT_EQ(s.offset, next);
        next += s.size;
        smallest = std::min(smallest, s.size);
        largest = std::max(largest, s.size);
      }
      EXPECT_EQ(next, batch);
      EXPECT_LE(largest - smallest, 1);
    }
  }
  const auto uneven = shard_batch(7, 3);
  EXPECT_EQ(uneven[0].size, 3);
  EXPECT_EQ(uneven[2].offset, 5);
}

TEST(Sharding, WeightingUnevenShardsByTheirShareGivesTheWholeBatchGradient) {
  // The trainer scales each shard's mean loss by size / batch before backward.
  torch::manual_seed(0);
  auto w = torch::randn({4, 3}, torch::requires_grad());
  auto x = torch::randn({7, 4});
  auto y = torch::randint(0, 3, {7});
  torch::nn::functional::cross_entropy(x.mm(w), y).backward();
  const auto whole = w.grad().clone();
  w.mutable_grad().zero_();
  for (const auto& s : shard_batch(7, 3)) {
    auto loss = torch::nn::functional::cross_entropy(x.narrow(0, s.offset, s.size).mm(w),
                                                     y.narrow(0, s.offset, s.size));
    (loss * (static_cast<double>(s.size) / 7.0)).backward();
  }
  EXPECT_TRUE(torch::allclose(w.grad(), whole, 1e-6, 1e-6));
}

TEST(NcclGroup, IsLinkedAndRefusesWithoutAGpu) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is visible";
  try {
    make_nccl_group({torch::Device(torch::kCUDA, 0)}, 5.0);
    FAIL() << "no error";
  } catch (const mgpu::data::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0 is not one of the 0 visible"), std::string::npos)
        << e.what();
  }
}

TEST(NcclGroup, OneRankAllReduceAndBroadcastOnAGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto group = make_nccl_group({torch::Device(torch::kCUDA, 0)}, 30.0);
  ASSERT_EQ(group.size(), 1u);
  EXPECT_EQ(group[0]->backend(), "nccl");
  auto t = torch::full({1000}, 3.0f, torch::kCUDA);
  group[0]->all_reduce_sum(t);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::full({1000}, 3.0f)));
  auto n = torch::arange(5, torch::TensorOptions().dtype(torch::kInt64).device(torch::kCUDA));
  group[0]->broadcast(n, 0);
  EXPECT_TRUE(torch::equal(n.cpu(), torch::arange(5, torch::kInt64)));
}
