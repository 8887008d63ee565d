// CIFAR-10 reader: layout, limits, and every kind of bad file.
#include <gtest/gtest.h>

#include "Fixtures.h"
#include "data/Cifar10.h"
#include "data/Datasets.h"
#include "data/InputError.h"

using namespace mgpu::data;
using mgpu::testing::TempDir;
using mgpu::testing::error_of;
using mgpu::testing::cifar_records;
using mgpu::testing::write_bytes;

TEST(Cifar10, ReadsLabelsAndPlanarPixels) {
  TempDir tmp;
  write_bytes(tmp.path() / "b.bin", cifar_records({3, 0, 9}));
  const Dataset d = read_cifar10_file(tmp.path() / "b.bin");
  ASSERT_EQ(d.size(), 3);
  EXPECT_EQ(d.images.sizes().vec(), (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_EQ(d.images.dtype(), torch::kUInt8);
  EXPECT_EQ(d.labels.dtype(), torch::kInt64);
  EXPECT_EQ(d.labels[0].item<int64_t>(), 3);
  EXPECT_EQ(d.labels[2].item<int64_t>(), 9);
  // Record 1, channel 2 (blue), row 5, column 7 is pixel byte 2*1024 + 5*32 + 7.
  const int p = 2 * 1024 + 5 * 32 + 7;
  EXPECT_EQ(d.images[1][2][5][7].item<int64_t>(), (1 * 7 + p) % 256);
}

TEST(Cifar10, MaxRecordsKeepsTheFirst) {
  TempDir tmp;
  write_bytes(tmp.path() / "b.bin", cifar_records({1, 2, 3, 4}));
  const Dataset d = read_cifar10_file(tmp.path() / "b.bin", 2);
  ASSERT_EQ(d.size(), 2);
  EXPECT_EQ(d.labels[1].item<int64_t>(), 2);
}

TEST(Cifar10, TruncatedFileIsRefusedWithItsName) {
  TempDir tmp;
  auto bytes = cifar_records({1, 2});
  bytes.pop_back();  // one byte short
  write_bytes(tmp.path() / "short.bin", bytes);
  const auto msg = error_of([&] { read_cifar10_file(tmp.path() / "short.bin"); });
  EXPECT_NE(msg.find("short.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a whole number of 3073-byte records"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3072 bytes left over"), std::string::npos) << msg;
}

TEST(Cifar10, OneByteTooLongIsRefused) {
  TempDir tmp;
  auto bytes = cifar_records({1});
  bytes.push_back(0);
  write_bytes(tmp.path() / "long.bin", bytes);
  const auto msg = error_of([&] { read_cifar10_file(tmp.path() / "long.bin"); });
  EXPECT_NE(msg.find("1 bytes left over"), std::string::npos) << msg;
}

TEST(Cifar10, LabelOutOfRangeNamesTheRecord) {
  TempDir tmp;
  write_bytes(tmp.path() / "bad.bin", cifar_records({1, 10, 2}));
  const auto msg = error_of([&] { read_cifar10_file(tmp.path() / "bad.bin"); });
  EXPECT_NE(msg.find("bad.bin: record 1 has label 10"), std::string::npos) << msg;
}

TEST(Cifar10, MissingAndEmptyFiles) {
  TempDir tmp;
  auto msg = error_of([&] { read_cifar10_file(tmp.path() / "nope.bin"); });
  EXPECT_NE(msg.find("nope.bin is missing"), std::string::npos) << msg;
  write_bytes(tmp.path() / "empty.bin", {});
  msg = error_of([&] { read_cifar10_file(tmp.path() / "empty.bin"); });
  EXPECT_NE(msg.find("empty.bin is empty"), std::string::npos) << msg;
}

TEST(Cifar10, LoadsFromTheFolderOrItsParentAndHonoursLimits) {
  TempDir tmp;
  const auto bin = mgpu::testing::write_cifar_dir(tmp.path(), 4);
  const DataSplit all = load_cifar10(tmp.path(), 0, 0);  // the parent folder
  EXPECT_EQ(all.name, "cifar10");
  EXPECT_EQ(all.source, bin.string());
  EXPECT_EQ(all.train.size(), 20);
  EXPECT_EQ(all.test.size(), 4);
  EXPECT_EQ(all.class_names.size(), 10u);

  const DataSplit some = load_cifar10(bin, 6, 3);  // the folder itself
  EXPECT_EQ(some.train.size(), 6);  // 4 from data_batch_1, 2 from data_batch_2
  EXPECT_EQ(some.test.size(), 3);
  EXPECT_EQ(some.train.labels[5].item<int64_t>(), 1);
}

TEST(Cifar10, MissingBatchFileIsNamed) {
  TempDir tmp;
  const auto bin = mgpu::testing::write_cifar_dir(tmp.path(), 2);
  std::filesystem::remove(bin / "data_batch_3.bin");
  const auto msg = error_of([&] { load_cifar10(tmp.path(), 0, 0); });
  EXPECT_NE(msg.find("data_batch_3.bin is missing"), std::string::npos) << msg;
}

TEST(Cifar10, NoFilesAtAllSaysWhatWasExpected) {
  TempDir tmp;
  const auto msg = error_of([&] { load_cifar10(tmp.path(), 0, 0); });
  EXPECT_NE(msg.find("no CIFAR-10 files in"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cifar-10-batches-bin"), std::string::npos) << msg;
}

TEST(Datasets, AutoPicksCifarWhenPresentAndRejectsUnknownNames) {
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path(), 2);
  DataConfig config;
  config.data_dir = tmp.path().string();
  EXPECT_EQ(load_data(config).name, "cifar10");
  config.dataset = "mnist";
  EXPECT_NE(error_of([&] { load_data(config); }).find("--dataset 'mnist'"), std::string::npos);
  TempDir empty;
  config.dataset = "auto";
  config.data_dir = empty.path().string();
  EXPECT_NE(error_of([&] { load_data(config); }).find("holds neither"), std::string::npos);
}
