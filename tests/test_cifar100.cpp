// CIFAR-100 reader: the two label bytes, fine or coarse labels and their names, limits, and
// bad files.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "Fixtures.h"
#include "data/Cifar100.h"
#include "data/Datasets.h"
#include "data/InputError.h"

using namespace mgpu::data;
using mgpu::testing::TempDir;
using mgpu::testing::cifar100_records;
using mgpu::testing::error_of;
using mgpu::testing::write_bytes;

namespace {

// A cifar-100-binary/ folder whose train.bin holds `train` and test.bin two good records.
std::filesystem::path write_files(const std::filesystem::path& dir,
                                  const std::vector<uint8_t>& train) {
  const auto bin = dir / "cifar-100-binary";
  std::filesystem::create_directories(bin);
  write_bytes(bin / "train.bin", train);
  write_bytes(bin / "test.bin", cifar100_records({{0, 0}, {1, 2}}));
  return bin;
}

}  // namespace

TEST(Cifar100, FineOrCoarseLabelsWithTheirNamesAndPlanarPixels) {
  TempDir tmp;
  write_files(tmp.path(), cifar100_records({{3, 41}, {19, 99}, {0, 0}}));
  const DataSplit fine = load_cifar100(tmp.path(), "fine", 0, 0);
  EXPECT_EQ(fine.name, "cifar100");
  ASSERT_EQ(fine.train.size(), 3);
  EXPECT_EQ(fine.test.size(), 2);
  EXPECT_EQ(fine.train.labels[0].item<int64_t>(), 41);
  EXPECT_EQ(fine.train.labels[1].item<int64_t>(), 99);
  ASSERT_EQ(fine.class_names.size(), 100u);
  EXPECT_EQ(fine.class_names[41], "lawn_mower");
  EXPECT_EQ(fine.class_names[99], "worm");
  EXPECT_EQ(fine.train.images.sizes().vec(), (std::vector<int64_t>{3, 3, 32, 32}));
  // Record 1, channel 2 (blue), row 5, column 7 is pixel byte 2*1024 + 5*32 + 7, after the two
  // label bytes.
  const int p = 2 * 1024 + 5 * 32 + 7;
  EXPECT_EQ(fine.train.images[1][2][5][7].item<int64_t>(), (1 * 7 + p) % 256);

  const DataSplit coarse = load_cifar100(tmp.path(), "coarse", 0, 0);
  EXPECT_EQ(coarse.name, "cifar100-coarse");
  EXPECT_EQ(coarse.train.labels[0].item<int64_t>(), 3);
  EXPECT_EQ(coarse.train.labels[1].item<int64_t>(), 19);
  ASSERT_EQ(coarse.class_names.size(), 20u);
  EXPECT_EQ(coarse.class_names[3], "food_containers");
  EXPECT_EQ(coarse.class_names[19], "vehicles_2");
  EXPECT_TRUE(torch::equal(coarse.train.images, fine.train.images));
}

TEST(Cifar100, ClassNamesAreTheOfficialAlphabeticalLists) {
  // fine_label_names.txt and coarse_label_names.txt are in alphabetical order, each name once:
  // a name out of place or mistyped into another position breaks the order.
  TempDir tmp;
  write_files(tmp.path(), cifar100_records({{0, 0}}));
  for (const std::string labels : {"fine", "coarse"}) {
    const auto names = load_cifar100(tmp.path(), labels, 0, 0).class_names;
    EXPECT_TRUE(std::is_sorted(names.begin(), names.end())) << labels;
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size()) << labels;
  }
}

TEST(Cifar100, EveryLabelByteIsCheckedWhicheverIsUsed) {
  TempDir tmp;
  write_files(tmp.path(), cifar100_records({{1, 1}, {2, 100}, {3, 3}}));
  auto msg = error_of([&] { load_cifar100(tmp.path(), "coarse", 0, 0); });
  EXPECT_NE(msg.find("train.bin: record 1 has fine label 100 (expected 0-99)"), std::string::npos)
      << msg;
  write_files(tmp.path(), cifar100_records({{1, 1}, {20, 2}}));
  msg = error_of([&] { load_cifar100(tmp.path(), "fine", 0, 0); });
  EXPECT_NE(msg.find("record 1 has coarse label 20 (expected 0-19)"), std::string::npos) << msg;
}

TEST(Cifar100, TruncatedOrCifar10FilesAreRefused) {
  TempDir tmp;
  auto bytes = cifar100_records({{1, 2}, {3, 4}});
  bytes.pop_back();
  write_files(tmp.path(), bytes);
  auto msg = error_of([&] { load_cifar100(tmp.path(), "fine", 0, 0); });
  EXPECT_NE(msg.find("CIFAR-100 file"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a whole number of 3074-byte records"), std::string::npos) << msg;
  // 2 CIFAR-10 records (3,073 bytes each) are not whole CIFAR-100 records either.
  write_files(tmp.path(), mgpu::testing::cifar_records({1, 2}));
  msg = error_of([&] { load_cifar100(tmp.path(), "fine", 0, 0); });
  EXPECT_NE(msg.find("the file is truncated or not CIFAR-100"), std::string::npos) << msg;
}

TEST(Cifar100, FolderOrParentLimitsAndMissingFiles) {
  TempDir tmp;
  const auto bin = mgpu::testing::write_cifar100_dir(tmp.path(), 6);
  const DataSplit all = load_cifar100(tmp.path(), "fine", 0, 0);
  EXPECT_EQ(all.source, bin.string());
  EXPECT_EQ(all.train.size(), 6);
  const DataSplit some = load_cifar100(bin, "fine", 4, 2);
  EXPECT_EQ(some.train.size(), 4);
  EXPECT_EQ(some.test.size(), 2);
  EXPECT_EQ(some.train.labels[3].item<int64_t>(), 15);

  std::filesystem::remove(bin / "test.bin");
  auto msg = error_of([&] { load_cifar100(tmp.path(), "fine", 0, 0); });
  EXPECT_NE(msg.find("test.bin is missing"), std::string::npos) << msg;
  TempDir empty;
  msg = error_of([&] { load_cifar100(empty.path(), "fine", 0, 0); });
  EXPECT_NE(msg.find("no CIFAR-100 files in"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cifar-100-binary"), std::string::npos) << msg;
  msg = error_of([&] { load_cifar100(tmp.path(), "medium", 0, 0); });
  EXPECT_NE(msg.find("--labels 'medium': expected fine or coarse"), std::string::npos) << msg;
}

TEST(Datasets, Cifar100ByNameWithItsLabelsAndBackFromAWeightsFile) {
  TempDir tmp;
  mgpu::testing::write_cifar100_dir(tmp.path(), 4);
  DataConfig config;
  config.dataset = "cifar100";
  config.data_dir = tmp.path().string();
  config.download = false;
  EXPECT_EQ(load_data(config).class_names.size(), 100u);
  config.labels = "coarse";
  const DataSplit coarse = load_data(config);
  EXPECT_EQ(coarse.class_names.size(), 20u);
  // A weights file records "cifar100-coarse": evaluate's --dataset auto loads the same again.
  const DataConfig again = data_set_named(DataConfig{}, coarse.name);
  EXPECT_EQ(again.dataset, "cifar100");
  EXPECT_EQ(again.labels, "coarse");
  EXPECT_EQ(data_set_named(DataConfig{}, "cifar10").labels, "fine");

  config.dataset = "cifar10";
  EXPECT_NE(error_of([&] { load_data(config); }).find("--labels coarse is for --dataset cifar100"),
            std::string::npos);
}
