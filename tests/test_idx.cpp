// IDX reader (plain and gzipped) and the Fashion-MNIST loader, good and bad files.
#include <gtest/gtest.h>

#include "Fixtures.h"
#include "data/Idx.h"
#include "data/InputError.h"

using namespace mgpu::data;
using mgpu::testing::TempDir;
using mgpu::testing::error_of;
using mgpu::testing::idx_bytes;
using mgpu::testing::write_bytes;
using mgpu::testing::write_gz;

namespace {

std::vector<uint8_t> ramp(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i % 251);
  return v;
}

// Four Fashion-MNIST-style files of n 28x28 images; labels i % 10.
void write_fashion(const std::filesystem::path& dir, uint32_t n, bool gz) {
  std::vector<uint8_t> labels(n);
  for (uint32_t i = 0; i < n; ++i) labels[i] = static_cast<uint8_t>(i % 10);
  auto write = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    gz ? write_gz(dir / (name + ".gz"), bytes) : write_bytes(dir / name, bytes);
  };
  for (const std::string prefix : {"train", "t10k"}) {
    write(prefix + "-images-idx3-ubyte", idx_bytes({n, 28, 28}, ramp(n * 28 * 28)));
    write(prefix + "-labels-idx1-ubyte", idx_bytes({n}, labels));
  }
}

}  // namespace

TEST(Idx, ReadsPlainAndGzippedAlike) {
  TempDir tmp;
  const auto bytes = idx_bytes({2, 3, 4}, ramp(24));
  write_bytes(tmp.path() / "plain", bytes);
  write_gz(tmp.path() / "packed.gz", bytes);
  const auto a = read_idx(tmp.path() / "plain", 3);
  const auto b = read_idx(tmp.path() / "packed.gz", 3);
  EXPECT_EQ(a.sizes().vec(), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(a[1][2][3].item<int64_t>(), 23);
}

TEST(Idx, BadMagicAndWrongDimensionCount) {
  TempDir tmp;
  auto bytes = idx_bytes({4}, ramp(4));
  bytes[2] = 0x0D;  // float data
  write_bytes(tmp.path() / "float", bytes);
  auto msg = error_of([&] { read_idx(tmp.path() / "float", 1); });
  EXPECT_NE(msg.find("magic 00000d01, expected 00000801"), std::string::npos) << msg;
  write_bytes(tmp.path() / "labels", idx_bytes({4}, ramp(4)));
  msg = error_of([&] { read_idx(tmp.path() / "labels", 3); });
  EXPECT_NE(msg.find("expected 00000803"), std::string::npos) << msg;
}

TEST(Idx, TruncatedLongAndEmptyFiles) {
  TempDir tmp;
  auto bytes = idx_bytes({3, 28, 28}, ramp(3 * 28 * 28));
  auto shorter = bytes;
  shorter.pop_back();
  write_gz(tmp.path() / "short.gz", shorter);
  auto msg = error_of([&] { read_idx(tmp.path() / "short.gz", 3); });
  EXPECT_NE(msg.find("short.gz is truncated: header promises 2352 data bytes, found 2351"),
            std::string::npos)
      << msg;
  auto longer = bytes;
  longer.push_back(1);
  write_bytes(tmp.path() / "long", longer);
  msg = error_of([&] { read_idx(tmp.path() / "long", 3); });
  EXPECT_NE(msg.find("has bytes after"), std::string::npos) << msg;
  write_bytes(tmp.path() / "empty", {});
  msg = error_of([&] { read_idx(tmp.path() / "empty", 3); });
  EXPECT_NE(msg.find("shorter than its 4-byte header"), std::string::npos) << msg;
  msg = error_of([&] { read_idx(tmp.path() / "absent", 3); });
  EXPECT_NE(msg.find("absent is missing"), std::string::npos) << msg;
}

TEST(FashionMnist, LoadsGzippedAndPlainFolders) {
  for (bool gz : {true, false}) {
    TempDir tmp;
    write_fashion(tmp.path(), 12, gz);
    ASSERT_TRUE(has_fashion_mnist(tmp.path()));
    const DataSplit split = load_fashion_mnist(tmp.path(), 5, 0);
    EXPECT_EQ(split.name, "fashion-mnist");
    EXPECT_EQ(split.train.images.sizes().vec(), (std::vector<int64_t>{5, 1, 28, 28}));
    EXPECT_EQ(split.test.size(), 12);
    EXPECT_EQ(split.train.labels[3].item<int64_t>(), 3);
    EXPECT_EQ(split.class_names[9], "Ankle boot");
  }
}

TEST(FashionMnist, CountMismatchAndBadLabels) {
  TempDir tmp;
  write_fashion(tmp.path(), 4, false);
  write_bytes(tmp.path() / "train-labels-idx1-ubyte", idx_bytes({3}, {0, 1, 2}));
  auto msg = error_of([&] { load_fashion_mnist(tmp.path(), 0, 0); });
  EXPECT_NE(msg.find("holds 4 images but"), std::string::npos) << msg;
  write_bytes(tmp.path() / "train-labels-idx1-ubyte", idx_bytes({4}, {0, 1, 12, 2}));
  msg = error_of([&] { load_fashion_mnist(tmp.path(), 0, 0); });
  EXPECT_NE(msg.find("record 2 has label 12"), std::string::npos) << msg;
  TempDir empty;
  msg = error_of([&] { load_fashion_mnist(empty.path(), 0, 0); });
  EXPECT_NE(msg.find("no Fashion-MNIST files"), std::string::npos) << msg;
}

TEST(Idx, HeadersThatClaimTooMuchAreRefusedBeforeAnyAllocation) {
  // Both were libFuzzer findings (docs/reliability.md): a product of dimensions that overflowed
  // int64 (UBSan), and a 24-byte file whose header claimed 8 GB (allocated up front).
  TempDir tmp;
  write_bytes(tmp.path() / "overflow", idx_bytes({1u << 17, 1u << 17, 1u << 31}, {}));
  auto msg = error_of([&] { read_idx(tmp.path() / "overflow", 3); });
  EXPECT_NE(msg.find("header claims more than 17179869184 bytes"), std::string::npos) << msg;
  write_bytes(tmp.path() / "claims", idx_bytes({2, 0x78000002u, 2}, ramp(8)));
  msg = error_of([&] { read_idx(tmp.path() / "claims", 3); });
  EXPECT_NE(msg.find("is truncated: header promises 8053063688 data bytes, found 8"),
            std::string::npos)
      << msg;
}
