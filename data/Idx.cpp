// IDX reader on zlib's gz* functions, which read gzipped and plain files alike.
#include "data/Idx.h"

#include <fmt/core.h>
#include <zlib.h>

#include <memory>
#include <vector>

#include "data/InputError.h"

namespace mgpu::data {
namespace fs = std::filesystem;

namespace {

struct GzCloser {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly n bytes; returns how many were read (less at end of file).
int64_t read_bytes(gzFile f, const fs::path& file, uint8_t* out, int64_t n) {
  int64_t done = 0;
  while (done < n) {
    const auto chunk = static_cast<unsigned>(std::min<int64_t>(n - done, 1 << 30));
    const int got = gzread(f, out + done, chunk);
    if (got < 0) {
      int err = 0;
      throw InputError(fmt::format("{}: corrupt data ({})", file.string(), gzerror(f, &err)));
    }
    if (got == 0) break;
    done += got;
  }
  return done;
}

// The file itself or, if it is absent, file + ".gz".
fs::path plain_or_gz(const fs::path& dir, const std::string& name) {
  std::error_code ec;
  if (fs::is_regular_file(dir / name, ec)) return dir / name;
  return dir / (name + ".gz");
}

}  // namespace

torch::Tensor read_idx(const fs::path& file, int64_t expected_dims) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    throw InputError(fmt::format("IDX file {} is missing", file.string()));
  }
  GzFile f(gzopen(file.c_str(), "rb"));
  if (!f) throw InputError(fmt::format("cannot open IDX file {}", file.string()));

  uint8_t magic[4];
  if (read_bytes(f.get(), file, magic, 4) != 4) {
    throw InputError(fmt::format("IDX file {} is shorter than its 4-byte header", file.string()));
  }
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] != expected_dims) {
    throw InputError(fmt::format(
        "IDX file {}: magic {:02x}{:02x}{:02x}{:02x}, expected 000008{:02x} (unsigned bytes, "
        "{} dimensions)",
        file.string(), magic[0], magic[1], magic[2], magic[3], expected_dims, expected_dims));
  }
  std::vector<int64_t> shape;
  int64_t total = 1;
  for (int64_t d = 0; d < expected_dims; ++d) {
    uint8_t be[4];
    if (read_bytes(f.get(), file, be, 4) != 4) {
      throw InputError(fmt::format("IDX file {}: header ends inside dimension {}", file.string(), d));
    }
    const int64_t size = (int64_t{be[0]} << 24) | (be[1] << 16) | (be[2] << 8) | be[3];
    if (size <= 0 || size > (int64_t{1} << 31)) {
      throw InputError(fmt::format("IDX file {}: dimension {} is {}", file.string(), d, size));
    }
    shape.push_back(size);
    constexpr int64_t kLimit = int64_t{1} << 34;
    if (size > kLimit / total) {  // checked before multiplying: libFuzzer's second finding
      throw InputError(fmt::format("IDX file {}: header claims more than {} bytes", file.string(),
                                   kLimit));
    }
    total *= size;
  }
  // Memory grows with the bytes actually read, never with what a header claims (a 24-byte
  // file claiming 8 GB was libFuzzer's first finding).
  constexpr int64_t kChunk = int64_t{1} << 24;
  std::vector<uint8_t> bytes;
  while (static_cast<int64_t>(bytes.size()) < total) {
    const auto at = static_cast<int64_t>(bytes.size());
    const int64_t want = std::min(kChunk, total - at);
    bytes.resize(static_cast<size_t>(at + want));
    const int64_t read = read_bytes(f.get(), file, bytes.data() + at, want);
    bytes.resize(static_cast<size_t>(at + read));
    if (read < want) break;
  }
  const auto got = static_cast<int64_t>(bytes.size());
  if (got != total) {
    throw InputError(fmt::format("IDX file {} is truncated: header promises {} data bytes, found {}",
                                 file.string(), total, got));
  }
  uint8_t extra;
  if (read_bytes(f.get(), file, &extra, 1) != 0) {
    throw InputError(fmt::format("IDX file {} has bytes after the {} its header promises",
                                 file.string(), total));
  }
  return torch::from_blob(bytes.data(), shape, torch::kUInt8).clone();
}

bool has_fashion_mnist(const fs::path& dir) {
  std::error_code ec;
  for (const char* name : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    if (!fs::is_regular_file(plain_or_gz(dir, name), ec)) return false;
  }
  return true;
}

namespace {

Dataset read_idx_pair(const fs::path& dir, const std::string& prefix, int64_t limit) {
  const fs::path images_file = plain_or_gz(dir, prefix + "-images-idx3-ubyte");
  const fs::path labels_file = plain_or_gz(dir, prefix + "-labels-idx1-ubyte");
  auto images = read_idx(images_file, 3);  // [N, H, W]
  auto labels = read_idx(labels_file, 1);  // [N]
  if (images.size(0) != labels.size(0)) {
    throw InputError(fmt::format("{} holds {} images but {} holds {} labels", images_file.string(),
                                 images.size(0), labels_file.string(), labels.size(0)));
  }
  if (images.size(1) < 28 || images.size(2) < 28) {
    throw InputError(fmt::format("{}: images are {}x{}, expected at least 28x28",
                                 images_file.string(), images.size(1), images.size(2)));
  }
  const int64_t max_label = labels.max().item<int64_t>();
  if (max_label > 9) {
    const int64_t at = labels.argmax().item<int64_t>();
    throw InputError(fmt::format("{}: record {} has label {} (expected 0-9)", labels_file.string(),
                                 at, max_label));
  }
  Dataset out{images.unsqueeze(1), labels.to(torch::kInt64)};
  return out.first(limit);
}

}  // namespace

DataSplit load_fashion_mnist(const fs::path& dir, int64_t limit_train, int64_t limit_test) {
  if (!has_fashion_mnist(dir)) {
    throw InputError(fmt::format(
        "no Fashion-MNIST files in {}: expected train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each may end in .gz); Debian's "
        "dataset-fashion-mnist package installs them in /usr/share/datasets/fashion-mnist",
        dir.string()));
  }
  DataSplit split;
  split.name = "fashion-mnist";
  split.source = dir.string();
  split.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                       "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  split.train = read_idx_pair(dir, "train", limit_train);
  split.test = read_idx_pair(dir, "t10k", limit_test);
  return split;
}

}  // namespace mgpu::data
