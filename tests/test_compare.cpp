// mgpu compare on real runs: one replica against two (the tutorial's 1 GPU against 4, on CPU
// replicas), a run still in progress, a run of another data set, and what is not a run.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "Fixtures.h"
#include "train/report/History.h"

using mgpu::testing::run_mgpu;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;
using mgpu::testing::read_text;

namespace {

double median_epoch_seconds(const fs::path& run) {
  std::vector<double> s;
  for (const auto& e : mgpu::train::read_history_csv(run / "history.csv")) {
    s.push_back(std::stod(fmt::format("{:.3f}", e.seconds)));
  }
  std::sort(s.begin(), s.end());
  return s.size() % 2 ? s[s.size() / 2] : (s[s.size() / 2 - 1] + s[s.size() / 2]) / 2;
}

// The table's line for a run (it starts with the run's path).
std::string row(const std::string& out, const fs::path& run) {
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(run.string() + " ", 0) == 0) return line;
  }
  return "";
}

}  // namespace

// Outside the anonymous namespace: the tests derive from it (unity builds, -Wsubobject-linkage).
class CompareBinary : public ::testing::Test {
 protected:
  // Built once for the suite: two CIFAR-10 runs of MiniGoogLeNet (dropout included), 1 and 2
  // replicas of 8 images, the second with another --lr; 3 epochs of 64 images each.
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    mgpu::testing::write_cifar_dir(tmp_->path() / "data", 20);
    const std::string common = fmt::format(
        "train --gpus 0 --threads 1 --dataset cifar10 --no-download --data-dir {} --epochs 3 "
        "--limit-train 64 --limit-test 16 --batch-per-device 8 --verbose 2",
        (tmp_->path() / "data").string());
    one_ = run_mgpu(fmt::format("{} --out-dir {}", common, (tmp_->path() / "one").string())).code;
    two_ = run_mgpu(fmt::format("{} --cpu-replicas 2 --lr 0.01 --out-dir {}", common,
                                (tmp_->path() / "two").string()))
               .code;
  }
  static void TearDownTestSuite() { delete tmp_; }
  static fs::path dir(const char* name) { return tmp_->path() / name; }
  static TempDir* tmp_;
  static int one_, two_;
};
TempDir* CompareBinary::tmp_ = nullptr;
int CompareBinary::one_ = -1, CompareBinary::two_ = -1;

TEST_F(CompareBinary, OneReplicaAgainstTwoGivesTheTableCsvAndPlot) {
  ASSERT_EQ(one_, 0);
  ASSERT_EQ(two_, 0);
  const auto out = dir("cmp");
  const auto r = run_mgpu(fmt::format("compare {} {} --out-dir {}", dir("one").string(),
                                      dir("two").string(), out.string()));
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("run"), std::string::npos);
  EXPECT_NE(r.out.find("s/epoch (median)"), std::string::npos) << r.out;
  const double m1 = median_epoch_seconds(dir("one")), m2 = median_epoch_seconds(dir("two"));
  const std::string one = row(r.out, dir("one")), two = row(r.out, dir("two"));
  EXPECT_NE(one.find("1.00x"), std::string::npos) << one;
  EXPECT_NE(one.find("100%"), std::string::npos) << one;
  EXPECT_NE(two.find(fmt::format("{:.2f}x", m1 / m2)), std::string::npos) << two;
  EXPECT_NE(two.find(fmt::format("{:.0f}%", 100 * m1 / m2 / 2)), std::string::npos) << two;
  EXPECT_NE(two.find(fmt::format("{:.2f}", m2)), std::string::npos) << two;
  const auto history = mgpu::train::read_history_csv(dir("two") / "history.csv");
  double best = 0;
  for (const auto& e : history) best = std::max(best, e.val_acc);
  EXPECT_NE(two.find(fmt::format("{:.4f}", history.back().val_acc)), std::string::npos) << two;
  EXPECT_NE(two.find(fmt::format("{:.4f}", best)), std::string::npos) << two;
  // Devices, replicas, processes, global batch.
  EXPECT_NE(one.find(" cpu "), std::string::npos) << one;
  EXPECT_NE(two.find(" 2 x cpu "), std::string::npos) << two;
  EXPECT_NE(two.find("  16  "), std::string::npos) << two;
  // The recipes differ in the rate only (the replicas are the table's).
  EXPECT_NE(r.out.find("recipes differ in:\n  lr: 0.005 | 0.01\n"), std::string::npos) << r.out;
  const std::string csv = read_text(out / "compare.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3) << csv;
  EXPECT_NE(csv.find(fmt::format("{},2 x cpu,2,1,16,3,{:.4f},", dir("two").string(), m2)),
            std::string::npos)
      << csv;
  ASSERT_TRUE(fs::exists(out / "compare.png"));
  EXPECT_EQ(read_text(out / "compare.png").substr(1, 3), "PNG");
}

TEST_F(CompareBinary, ARunInProgressAndARunOfAnotherDataSetAreComparedAndSaidSo) {
  ASSERT_EQ(one_, 0);
  // In progress: what a run has before its end (run.json, history.csv; no summary.json).
  const auto partial = dir("partial");
  fs::create_directories(partial);
  fs::copy_file(dir("two") / "run.json", partial / "run.json");
  const auto lines = read_text(dir("two") / "history.csv");
  std::ofstream(partial / "history.csv") << lines.substr(0, lines.rfind('\n', lines.size() - 2) + 1);
  // Another data set: Fashion-MNIST (Debian's dataset-fashion-mnist).
  const auto fashion = dir("fashion");
  const auto f = run_mgpu(fmt::format(
      "train --gpus 0 --threads 1 --dataset fashion-mnist --epochs 1 --limit-train 64 "
      "--limit-test 16 --batch-per-device 8 --verbose 2 --out-dir {}",
      fashion.string()));
  ASSERT_EQ(f.code, 0) << f.err;
  const auto r = run_mgpu(fmt::format("compare {} {} {} --out-dir {}", dir("one").string(),
                                      partial.string(), fashion.string(), dir("cmp2").string()));
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find(fmt::format("note: {} has no summary.json: it is still training, or "
                                   "stopped before its end; comparing its 2 epoch(s) of 3 so far",
                                   partial.string())),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("note: the runs train different datasets (cifar10, cifar10, "
                       "fashion-mnist): compared as they are"),
            std::string::npos)
      << r.out;
  EXPECT_NE(row(r.out, partial).find("2 so far"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dataset: cifar10 | cifar10 | fashion-mnist"), std::string::npos) << r.out;
}

// A run whose path holds a comma and a quote is one run, quoted in the CSV.
TEST_F(CompareBinary, APathWithACommaIsOneRun) {
  ASSERT_EQ(one_, 0);
  const auto odd = dir("a,b\"c");
  fs::copy(dir("one"), odd, fs::copy_options::recursive);
  const auto r = run_mgpu(fmt::format("compare {} '{}' --out-dir {}", dir("one").string(),
                                      odd.string(), dir("cmp3").string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(row(r.out, odd).find("1.00x"), std::string::npos) << r.out;
  const std::string csv = read_text(dir("cmp3") / "compare.csv");
  std::string quoted = odd.string();
  quoted.replace(quoted.find('"'), 1, "\"\"");
  EXPECT_NE(csv.find("\"" + quoted + "\",cpu,1,1,8,3,"), std::string::npos) << csv;
}

TEST_F(CompareBinary, WhatIsNotARunIsRefusedNamingIt) {
  ASSERT_EQ(one_, 0);
  auto r = run_mgpu("compare");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("name the run directories"), std::string::npos) << r.err;
  r = run_mgpu(fmt::format("compare {} {}", dir("one").string(), dir("nowhere").string()));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find(dir("nowhere").string() + ": no such run directory"), std::string::npos)
      << r.err;
  fs::create_directories(dir("empty"));
  r = run_mgpu(fmt::format("compare {} {}", dir("one").string(), dir("empty").string()));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find(dir("empty").string() + " is not a run directory"), std::string::npos)
      << r.err;
  const auto broken = dir("broken");
  fs::create_directories(broken);
  std::ofstream(broken / "history.csv") << "epoch,lr,seconds,loss,acc,val_loss,val_acc\n1,2\n";
  r = run_mgpu(fmt::format("compare {} {}", dir("one").string(), broken.string()));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find((broken / "history.csv").string() + ":2"), std::string::npos) << r.err;
  std::ofstream(broken / "run.json") << "{ not json";
  r = run_mgpu(fmt::format("compare {} {}", dir("one").string(), broken.string()));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find((broken / "run.json").string() + ": not JSON"), std::string::npos) << r.err;
  // JSON, but not of the shape mgpu train writes.
  const auto odd = dir("odd");
  fs::create_directories(odd);
  fs::copy_file(dir("one") / "history.csv", odd / "history.csv");
  std::ofstream(odd / "summary.json") << "[]";
  r = run_mgpu(fmt::format("compare {} {}", dir("one").string(), odd.string()));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find((odd / "summary.json").string() + ": expected a JSON object"),
            std::string::npos)
      << r.err;
  fs::remove(odd / "summary.json");
  std::ofstream(odd / "run.json") << R"({"config": {"replicas": "one"}})";
  r = run_mgpu(fmt::format("compare {} {}", dir("one").string(), odd.string()));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find((odd / "run.json").string() + ": \"config.replicas\" is not a number"),
            std::string::npos)
      << r.err;
  // An output folder that cannot be: a file in its way. Nothing is written.
  std::ofstream(dir("afile")) << "x";
  r = run_mgpu(fmt::format("compare {} --out-dir {}", dir("one").string(),
                           (dir("afile") / "sub").string()));
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--out-dir"), std::string::npos) << r.err;
}
