// The fast defaults as users meet them: a CPU run takes the fastest path that changes float32
// results only by rounding (channels-last, measured in docs/benchmarks.md), each default has an
// off switch, and a CPU with bfloat16 instructions says what --amp bf16 would give.
#include <gtest/gtest.h>

#include <fstream>

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
