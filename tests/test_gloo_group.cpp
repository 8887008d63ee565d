// The multi-process CPU communicator (c10d's Gloo, joined through the TCPStore), in two and
// three real processes on localhost: this test program starts itself again as the workers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fmt/core.h>

#include <fstream>

#include "Fixtures.h"
#include "train/comm/GlooGroup.h"
#include "train/comm/StoreGroup.h"

using namespace mgpu::train;
using mgpu::testing::TempDir;
using mgpu::testing::free_port;
using mgpu::testing::read_text;

namespace {

// Starts `world` workers (this program, filtered to the worker test) and waits for them all.
void run_workers(int world, const std::string& mode, const std::filesystem::path& dir) {
  const int port = free_port();
  std::string cmd;
  for (int r = 0; r < world; ++r) {
    cmd += fmt::format(
        "MGPU_TEST_WORKER={} RANK={} WORLD_SIZE={} MASTER_ADDR=127.0.0.1 MASTER_PORT={} "
        "MGPU_TEST_OUT={} /proc/{}/exe --gtest_filter=GlooGroupWorker.Run > {}/log{} 2>&1 & ",
        mode, r, world, port, dir.string(), getpid(), dir.string(), r);
  }
  cmd += "wait";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
}

}  // namespace

// Not a test on its own: the body of each worker process started by the tests below.
TEST(GlooGroupWorker, Run) {
  const char* mode = std::getenv("MGPU_TEST_WORKER");
  if (!mode) GTEST_SKIP() << "runs only as a worker process";
  const ProcessInfo p = read_launcher_env();
  const std::filesystem::path out = std::getenv("MGPU_TEST_OUT");
  std::ofstream result(out / fmt::format("rank{}", p.rank));
  try {
    auto store = connect_store(p, 10.0);
    auto comm = make_gloo_communicator(store, p.rank, p.world_size, 2.0);
    if (std::string(mode) == "die" && p.rank == 1) std::_Exit(0);    // a peer that dies
    if (std::string(mode) == "stall" && p.rank == 1) sleep(6);        // one that stalls
    EXPECT_EQ(comm->backend(), "gloo");
    auto t = torch::full({1000}, static_cast<float>(p.rank + 1));
    comm->all_reduce_sum(t);
    auto b = torch::full({3}, static_cast<float>(p.rank * 10 + 7));
    comm->broadcast(b, p.world_size - 1);
    auto n = torch::full({}, p.rank + 1, torch::kInt64);  // a 0-dim integer, as the epoch totals
    comm->all_reduce_sum(n);
    result << t[0].item<float>() << " " << t[999].item<float>() << " " << b[2].item<float>()
           << " " << n.item<int64_t>();
  } catch (const CommError& e) {
    result << "error: " << e.what();
  }
}

TEST(GlooGroup, RankRContributesRPlusOneInTwoAndThreeProcesses) {
  for (int world : {2, 3}) {
    TempDir tmp;
    run_workers(world, "sum", tmp.path());
    const float sum = world * (world + 1) / 2.0f;
    const float root = (world - 1) * 10 + 7;
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(read_text(tmp.path() / fmt::format("rank{}", r)),
                fmt::format("{} {} {} {}", sum, sum, root, world * (world + 1) / 2))
          << read_text(tmp.path() / fmt::format("log{}", r));
    }
  }
}

TEST(GlooGroup, APeerThatDiesOrStallsIsAnErrorWithinTheTimeout) {
  for (const char* mode : {"die", "stall"}) {
    TempDir tmp;
    const auto start = std::chrono::steady_clock::now();
    run_workers(2, mode, tmp.path());
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20)) << mode;
    const auto r0 = read_text(tmp.path() / "rank0");
    EXPECT_NE(r0.find("error: rank 0: Gloo all_reduce failed (a peer died, or did not take part "
                      "within 2.0 s; the peer: rank 1 at "),
              std::string::npos)
        << mode << ": " << r0;
  }
}

TEST(GlooGroup, AJobThatNeverAssemblesIsAnError) {
  ProcessInfo p;
  p.rank = 0;
  p.world_size = 2;
  p.master_addr = "127.0.0.1";
  p.master_port = free_port();
  try {
    connect_store(p, 1.0);
    FAIL() << "no error";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("could not assemble the job at 127.0.0.1"),
              std::string::npos)
        << e.what();
  }
}
