// Output paths (train/files/AtomicFile.h): a run directory of its own for every run started
// with the default --out-dir, even in the same second; an output file name that is a directory
// is refused before any work.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "Fixtures.h"
#include "data/InputError.h"
#include "train/files/AtomicFile.h"

using mgpu::testing::TempDir;
namespace fs = std::filesystem;

TEST(AtomicFile, EveryNewRunDirectoryIsOneNoOtherRunHas) {
  TempDir tmp;
  const fs::path base = tmp.path() / "runs" / "cifar10-20261205-200255";
  mgpu::train::NewDirectories a, b;
  EXPECT_EQ(a.prepare_new(base, "--out-dir"), base);  // runs/ is made too
  EXPECT_EQ(b.prepare_new(base, "--out-dir"), fs::path(base.string() + "-2"));
  // Eight at once, as eight processes started together would: eight directories.
  std::vector<fs::path> made(8);
  std::vector<std::thread> threads;
  for (auto& dir : made) {
    threads.emplace_back([&] {
      mgpu::train::NewDirectories mine;
      dir = mine.prepare_new(base, "--out-dir");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(std::set<fs::path>(made.begin(), made.end()).size(), made.size());
  for (const auto& dir : made) {
    EXPECT_TRUE(fs::is_directory(dir));
    EXPECT_NE(dir, base);
  }
}

TEST(AtomicFile, AnOutputFileNameThatIsADirectoryIsRefused) {
  TempDir tmp;
  fs::create_directories(tmp.path() / "adir");
  for (const auto& bad : {tmp.path() / "adir", tmp.path() / "new" / ""}) {
    try {
      mgpu::train::check_output_file(bad, "--output", "plot.png");
      ADD_FAILURE() << bad << " was taken";
    } catch (const mgpu::data::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--output " + bad.string() +
                                           ": expected a file name such as plot.png"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_NO_THROW(mgpu::train::check_output_file(tmp.path() / "plot.png", "--output", "plot.png"));
  EXPECT_NO_THROW(mgpu::train::check_output_file(tmp.path() / "adir" / "p.png", "--output", "p"));
}
