// The bucketed, overlapped gradient all-reduce (train/comm/Reducer.h): DDP's bucket order, the
// first bucket on the wire while backward still runs, the same sums as one all-reduce, no wait
// for a parameter without a gradient, no_sync; and the simulated link. `mgpu train` with overlap:
// test_overlap_binary.cpp.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "Fixtures.h"
#include "data/InputError.h"
#include "train/comm/LocalGroup.h"
#include "train/comm/Reducer.h"
#include "train/comm/SimulatedLink.h"

using namespace mgpu;
using namespace mgpu::train;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

// A collective's work that counts its wait() calls.
class Counted : public Work {
 public:
  Counted(std::unique_ptr<Work> inner, int* waits) : inner_(std::move(inner)), waits_(waits) {}
  void wait() override {
    ++*waits_;
    inner_->wait();
  }
  bool test() override { return inner_->test(); }
  std::string error() const override { return inner_->error(); }

 private:
  std::unique_ptr<Work> inner_;
  int* waits_;
};

// Passes collectives on, noting for each started all-reduce its offset in the flat buffer and
// whether the first layer's weight gradient (the last the backward pass computes) was still zero.
class Recorder : public Communicator {
 public:
  Recorder(std::unique_ptr<Communicator> inner, torch::Tensor flat, torch::Tensor first_grad)
      : inner_(std::move(inner)), flat_(flat), first_grad_(first_grad) {}
  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend() const override { return inner_->backend(); }
  std::unique_ptr<Work> all_reduce_sum_async(torch::Tensor t) override {
    if (fail) throw CommError("rank 0: all_reduce failed on purpose");
    const auto offset = (static_cast<const float*>(t.data_ptr()) - flat_.data_ptr<float>());
    starts.push_back({offset, first_grad_.abs().sum().item<double>() == 0});
    return std::make_unique<Counted>(inner_->all_reduce_sum_async(t), &waited);
  }
  void broadcast(torch::Tensor& t, int root) override { inner_->broadcast(t, root); }
  void abort(const std::string& reason) override { inner_->abort(reason); }

  struct Start {
    int64_t offset;
    bool first_grad_still_zero;
  };
  std::vector<Start> starts;
  int waited = 0;  // the started collectives' wait() calls
  bool fail = false;

 private:
  std::unique_ptr<Communicator> inner_;
  torch::Tensor flat_, first_grad_;
};

// A linear layer that forward never uses, one whose output forward keeps but leaves out of the
// loss (its AccumulateGrad node exists, yet gets no gradient), both registered first (their
// buckets are the last), then four that make the loss.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    unused = register_module("unused", torch::nn::Linear(32, 32));
    side = register_module("side", torch::nn::Linear(32, 32));
    for (int i = 0; i < 4; ++i) {
      layers.push_back(register_module(fmt::format("fc{}", i), torch::nn::Linear(32, 32)));
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    side_output = side->forward(x);
    for (auto& l : layers) x = torch::relu(l->forward(x));
    return x.sum();
  }
  std::vector<torch::nn::Linear> layers;
  torch::nn::Linear unused{nullptr}, side{nullptr};
  torch::Tensor side_output;
};
TORCH_MODULE(Net);

// One rank: a net (the same initial weights on every rank) whose gradients are views of one flat
// buffer with 2 tail entries set to rank + 1, as the trainer lays them out.
struct Rank {
  explicit Rank(int rank) {
    {  // the global generator, which the ranks' threads share: one at a time
      static std::mutex mutex;
      std::lock_guard<std::mutex> lock(mutex);
      torch::manual_seed(3);
      net = Net();
    }
    int64_t total = 0;
    for (const auto& p : net->parameters()) total += p.numel();
    flat = torch::zeros({total + 2});
    int64_t at = 0;
    for (auto& p : net->parameters()) {
      p.mutable_grad() = flat.narrow(0, at, p.numel()).view(p.sizes());
      at += p.numel();
    }
    flat.narrow(0, total, 2).fill_(rank + 1);
    input = torch::randn({8, 32}, at::detail::createCPUGenerator(100 + rank));
  }
  Net net{nullptr};
  torch::Tensor flat, input;
};

BucketOptions tiny_buckets() {  // every parameter a bucket of its own
  BucketOptions o;
  o.bucket_mb = o.first_bucket_mb = 1e-9;
  return o;
}

// One rank behind a Recorder, with a reducer of one-parameter buckets.
struct Recorded {
  std::vector<std::unique_ptr<Communicator>> group = make_local_group(1, std::chrono::seconds(20));
  Rank rank{0};
  Recorder recorder{std::move(group[0]), rank.flat, rank.net->layers[0]->weight.grad()};
  Reducer reducer{rank.net->parameters(), rank.flat, 2, recorder, tiny_buckets()};
};

// Each of `world` ranks on a thread of its own: arm, one backward pass, finish; the flat
// buffers after it.
std::vector<torch::Tensor> reduce_on_threads(int world, const BucketOptions& options,
                                             bool arm = true) {
  auto group = make_local_group(world, std::chrono::seconds(20));
  std::vector<torch::Tensor> flats(static_cast<size_t>(world));
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        Rank rank(r);
        Reducer reducer(rank.net->parameters(), rank.flat, 2, *group[static_cast<size_t>(r)],
                        options);
        const auto loss = rank.net->forward(rank.input);
        if (arm) reducer.arm();
        loss.backward();
        reducer.finish();
        flats[static_cast<size_t>(r)] = rank.flat;
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  return flats;
}

}  // namespace

// DDP's assignment: reverse registration order, the first bucket closed at its small cap (with
// the tail), the others at the cap, each a contiguous slice of the buffer.
TEST(Reducer, BucketsFollowReverseRegistrationOrderWithASmallFirstBucket) {
  BucketOptions o;
  o.first_bucket_mb = 1;
  o.bucket_mb = 2;
  // Elements of 1/4 MiB: parameters of 1, 0.5, 2, 0.25 and 0.75 MiB, and a tail of 0.5 MiB.
  const auto buckets = assign_buckets({4, 2, 8, 1, 3}, 1 << 18, 2, o);
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[0].params, (std::vector<size_t>{4}));
  EXPECT_EQ(buckets[0].offset, 15);
  EXPECT_EQ(buckets[0].size, 5);  // parameter 4 and the tail: 1.25 MiB >= 1
  EXPECT_EQ(buckets[1].params, (std::vector<size_t>{3, 2}));
  EXPECT_EQ(buckets[1].offset, 6);
  EXPECT_EQ(buckets[1].size, 9);  // 2.25 MiB >= 2
  EXPECT_EQ(buckets[2].params, (std::vector<size_t>{1, 0}));
  EXPECT_EQ(buckets[2].offset, 0);
  EXPECT_EQ(buckets[2].size, 6);  // what is left
  // One big bucket holds everything; the first cap is never above the cap.
  o.bucket_mb = 25;
  o.first_bucket_mb = 100;
  EXPECT_EQ(assign_buckets({4, 2, 8, 1, 3}, 1 << 18, 2, o).size(), 1u);
}

// The last layer's bucket is started while the first layer's gradient is still zero: its
// all-reduce runs during the backward pass, and the buckets start in order, last layer first;
// a parameter whose node got no gradient holds its bucket (and the later ones) until finish().
TEST(Reducer, TheFirstBucketStartsWhileTheBackwardPassStillRuns) {
  Recorded one;
  auto& [group, rank, recorder, reducer] = one;
  const auto loss = rank.net->forward(rank.input);
  reducer.arm();
  loss.backward();
  // The side layer's 2 buckets wait for gradients that never come, and the unused layer's 2
  // come after them: 4 start only after the backward pass.
  ASSERT_EQ(recorder.starts.size(), reducer.buckets().size() - 4);
  EXPECT_TRUE(recorder.starts.front().first_grad_still_zero);
  for (size_t i = 1; i < recorder.starts.size(); ++i) {
    EXPECT_LT(recorder.starts[i].offset, recorder.starts[i - 1].offset) << i;
  }
  reducer.finish();
  EXPECT_EQ(recorder.starts.size(), reducer.buckets().size());
  EXPECT_GT(reducer.timeline().finished, 0);
}

// Buckets of one parameter each sum exactly what one all-reduce of the whole buffer sums: every
// element is the ranks' values added in rank order. The side layer's zeros are reduced after
// the backward pass instead of holding the others up forever (3 ranks, a 20 s deadline: a bucket
// left waiting would fail the test, not hang it).
TEST(Reducer, BucketsSumBitForBitAsOneAllReduceAndAnUnusedParameterHoldsNothingUp) {
  BucketOptions serial;
  serial.overlap = false;
  const auto bucketed = reduce_on_threads(3, tiny_buckets());
  const auto whole = reduce_on_threads(3, serial);
  for (int r = 0; r < 3; ++r) EXPECT_TRUE(torch::equal(bucketed[r], whole[r])) << r;
  EXPECT_TRUE(torch::equal(bucketed[0], bucketed[2]));
  // The sum itself, and the tail: 1 + 2 + 3.
  std::vector<torch::Tensor> own;
  for (int r = 0; r < 3; ++r) {
    Rank rank(r);
    rank.net->forward(rank.input).backward();
    own.push_back(rank.flat);
  }
  EXPECT_TRUE(torch::equal(bucketed[0], own[0] + own[1] + own[2]));
  EXPECT_EQ(bucketed[0][-1].item<float>(), 6);
  // The unused and the side layer: zeros; the first layer that makes the loss: its gradient.
  EXPECT_EQ(bucketed[0].narrow(0, 0, 2 * (32 * 32 + 32)).abs().sum().item<float>(), 0);
  EXPECT_GT(bucketed[0].narrow(0, 2 * (32 * 32 + 32), 32 * 32).abs().sum().item<float>(), 0);
}

// --comm-dtype bf16 and fp16: each rank's gradients go through the all-reduce in 16 bits (the
// sum in rank order, rounded after each addition), in buckets or in one, with the same result;
// the tail (the trainer's control words) stays float32 and exact, here 2^21 + 1 summed from
// three ranks, which neither 16-bit type holds.
TEST(Reducer, A16BitWireSumsTheGradientsIn16BitsAndKeepsTheTailExact) {
  for (const auto type : {torch::kBFloat16, torch::kHalf}) {
    auto options = tiny_buckets();
    options.wire = type;
    BucketOptions serial = options;
    serial.overlap = false;
    const auto bucketed = reduce_on_threads(3, options);
    const auto whole = reduce_on_threads(3, serial);
    std::vector<torch::Tensor> own;
    for (int r = 0; r < 3; ++r) {
      Rank rank(r);
      rank.net->forward(rank.input).backward();
      own.push_back(rank.flat.to(type));
    }
    const auto expected = ((own[0] + own[1]) + own[2]).to(torch::kFloat);
    const int64_t grads = expected.numel() - 2;
    for (int r = 0; r < 3; ++r) {
      EXPECT_TRUE(torch::equal(bucketed[r], whole[r])) << r;
      EXPECT_TRUE(torch::equal(bucketed[r].narrow(0, 0, grads), expected.narrow(0, 0, grads)))
          << r;
      EXPECT_EQ(bucketed[r][-1].item<float>(), 6) << r;  // 1 + 2 + 3
    }
    // Float32 would differ: the 16-bit wire is what was used.
    BucketOptions plain = tiny_buckets();
    EXPECT_FALSE(torch::equal(reduce_on_threads(3, plain)[0], bucketed[0]));
  }
  // The tail, exact beyond 16 bits: 2^20 + 2^20 + 1 (bfloat16 would round it to 2^21, float16
  // overflow); float32 holds it.
  auto group = make_local_group(3, std::chrono::seconds(20));
  std::vector<torch::Tensor> flats(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      Rank rank(r);
      auto options = tiny_buckets();
      options.wire = torch::kBFloat16;
      Reducer reducer(rank.net->parameters(), rank.flat, 2, *group[static_cast<size_t>(r)],
                      options);
      rank.flat.narrow(0, rank.flat.numel() - 2, 2).fill_(r < 2 ? 1048576.0f : 1.0f);
      const auto loss = rank.net->forward(rank.input);
      reducer.arm();
      loss.backward();
      reducer.finish();
      flats[static_cast<size_t>(r)] = rank.flat;
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) EXPECT_EQ(flats[r][-1].item<float>(), 2097153.0f) << r;
}

// Without arm() (DDP's no_sync: the micro-batches before the last) the backward pass starts
// nothing; finish() then reduces everything.
// finish() waits for every bucket it started, the last one too (with NCCL a bucket not waited
// for is a sum the optimizer's step may read before it is there).
TEST(Reducer, FinishWaitsForEveryBucketItStarted) {
  Recorded one;
  const auto loss = one.rank.net->forward(one.rank.input);
  one.reducer.arm();
  loss.backward();
  one.reducer.finish();
  ASSERT_EQ(one.recorder.starts.size(), one.reducer.buckets().size());
  EXPECT_EQ(one.recorder.waited, static_cast<int>(one.reducer.buckets().size()));
}

TEST(Reducer, ABackwardPassWithoutArmStartsNothing) {
  Recorded one;
  auto& [group, rank, recorder, reducer] = one;
  rank.net->forward(rank.input).backward();
  EXPECT_TRUE(recorder.starts.empty());
  reducer.finish();
  EXPECT_EQ(recorder.starts.size(), reducer.buckets().size());
  EXPECT_EQ(reduce_on_threads(2, tiny_buckets(), /*arm=*/false)[0].sum().item<float>(),
            reduce_on_threads(2, tiny_buckets())[0].sum().item<float>());
}

// A collective that cannot start inside the autograd engine's hook is thrown by finish(), as
// the CommError it is, on the trainer's thread.
TEST(Reducer, ACollectiveThatCannotStartIsThrownByFinish) {
  Recorded one;
  auto& [group, rank, recorder, reducer] = one;
  recorder.fail = true;
  const auto loss = rank.net->forward(rank.input);
  reducer.arm();
  EXPECT_NO_THROW(loss.backward());
  EXPECT_THROW(reducer.finish(), CommError);
}

// A second backward pass through the same graph before finish() would add to slices already on
// the wire: an error naming the parameter, not a silently lost gradient.
TEST(Reducer, AGradientAccumulatedTwiceBeforeFinishIsAnError) {
  auto group = make_local_group(1, std::chrono::seconds(20));
  Rank rank(0);
  Reducer reducer(rank.net->parameters(), rank.flat, 2, *group[0], tiny_buckets());
  const auto loss = rank.net->forward(rank.input);
  reducer.arm();
  loss.backward({}, /*retain_graph=*/true);
  loss.backward();
  try {
    reducer.finish();
    ADD_FAILURE() << "finish() accepted a gradient accumulated twice";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("accumulated twice"), std::string::npos) << e.what();
  }
}

// A collective of B bytes takes B / bandwidth + latency on the link, one after the other, by
// sleeping; the sums are the communicator's own.
TEST(SimulatedLink, EachCollectiveTakesItsBytesOverTheBandwidthOneAfterAnother) {
  auto comms = behind_link(make_local_group(1, std::chrono::seconds(20)), LinkSpeed{0.001, 1000});
  auto t = torch::ones({10000});  // 40 kB: 40 ms at 1 MB/s, plus 1 ms
  const auto start = Clock::now();
  auto first = comms[0]->all_reduce_sum_async(t);
  auto second = comms[0]->all_reduce_sum_async(t);
  const double started = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_LT(started, 0.02);  // starting does not wait
  first->wait();
  EXPECT_GE(std::chrono::duration<double>(Clock::now() - start).count(), 0.041);
  second->wait();
  EXPECT_GE(std::chrono::duration<double>(Clock::now() - start).count(), 0.082);
  EXPECT_EQ(t.sum().item<float>(), 10000);
}

TEST(SimulatedLink, TheVariableIsReadOrRefusedByName) {
  ::setenv("MGPU_SIM_LINK", "2.5,40", 1);
  const auto link = simulated_link_from_env();
  ASSERT_TRUE(link.has_value());
  EXPECT_EQ(link->gb_per_s, 2.5);
  EXPECT_EQ(link->latency_us, 40);
  for (const char* bad : {"fast", "0,10", "1", "1,-5", "nan,1", "1,2,3"}) {
    ::setenv("MGPU_SIM_LINK", bad, 1);
    try {
      simulated_link_from_env();
      ADD_FAILURE() << bad;
    } catch (const data::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("MGPU_SIM_LINK"), std::string::npos) << e.what();
    }
  }
  ::unsetenv("MGPU_SIM_LINK");
  EXPECT_FALSE(simulated_link_from_env().has_value());
}
