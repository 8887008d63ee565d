// CIFAR binary reader: one bulk read per file, every record validated.
#include "data/Cifar10.h"

#include <fmt/core.h>

#include <fstream>
#include <vector>

#include "data/InputError.h"

namespace mgpu::data {
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> read_whole_file(const fs::path& file, const std::string& format) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    throw InputError(fmt::format("{} file {} is missing (expected a regular file)", format,
                                 file.string()));
  }
  const auto size = static_cast<int64_t>(fs::file_size(file, ec));
  if (ec) throw InputError(fmt::format("cannot stat {}: {}", file.string(), ec.message()));
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(fmt::format("cannot open {} for reading", file.string()));
  in.read(reinterpret_cast<char*>(bytes.data()), size);
  if (in.gcount() != size) {
    throw InputError(fmt::format("{}: read {} of {} bytes", file.string(), in.gcount(), size));
  }
  return bytes;
}

}  // namespace

Dataset read_cifar_file(const fs::path& file, const CifarFormat& format, int64_t max_records) {
  std::vector<uint8_t> bytes = read_whole_file(file, format.name);
  const auto label_bytes = static_cast<int64_t>(format.label_classes.size());
  const int64_t record_bytes = label_bytes + kCifarImageBytes;
  const auto size = static_cast<int64_t>(bytes.size());
  if (size == 0) {
    throw InputError(fmt::format("{} file {} is empty (expected records of {} bytes)",
                                 format.name, file.string(), record_bytes));
  }
  if (size % record_bytes != 0) {
    throw InputError(fmt::format(
        "{} file {} has {} bytes, not a whole number of {}-byte records "
        "({} records and {} bytes left over); the file is truncated or not {}",
        format.name, file.string(), size, record_bytes, size / record_bytes,
        size % record_bytes, format.name));
  }
  const int64_t records = size / record_bytes;
  for (int64_t r = 0; r < records; ++r) {
    for (int64_t b = 0; b < label_bytes; ++b) {
      const uint8_t label = bytes[static_cast<size_t>(r * record_bytes + b)];
      const int64_t classes = format.label_classes[static_cast<size_t>(b)];
      if (label >= classes) {
        throw InputError(fmt::format("{} file {}: record {} has {} {} (expected 0-{})",
                                     format.name, file.string(), r,
                                     format.label_names[static_cast<size_t>(b)], label,
                                     classes - 1));
      }
    }
  }
  const int64_t keep = max_records > 0 ? std::min(max_records, records) : records;
  auto table = torch::from_blob(bytes.data(), {records, record_bytes}, torch::kUInt8)
                   .narrow(0, 0, keep);
  Dataset out;
  out.labels = table.select(1, static_cast<int64_t>(format.label_used)).to(torch::kInt64);
  out.images = table.narrow(1, label_bytes, kCifarImageBytes).reshape({keep, 3, 32, 32}).clone();
  return out;
}

Dataset read_cifar10_file(const fs::path& file, int64_t max_records) {
  return read_cifar_file(file, {"CIFAR-10", {"label"}, {10}, 0}, max_records);
}

std::optional<fs::path> find_cifar_folder(const fs::path& dir, const std::string& folder,
                                          const std::string& first_file) {
  std::error_code ec;
  for (const fs::path& candidate : {dir, dir / folder}) {
    if (fs::is_regular_file(candidate / first_file, ec)) return candidate;
  }
  return std::nullopt;
}

fs::path cifar_folder(const fs::path& dir, const std::string& name, const std::string& folder,
                      const std::string& first_file, const std::string& archive) {
  const auto found = find_cifar_folder(dir, folder, first_file);
  if (!found) {
    throw InputError(fmt::format(
        "no {} files in {}: expected {} or {} (the official binary version, {})", name,
        dir.string(), (dir / first_file).string(), (dir / folder / first_file).string(),
        archive));
  }
  return *found;
}

std::optional<fs::path> find_cifar10_dir(const fs::path& dir) {
  return find_cifar_folder(dir, "cifar-10-batches-bin", "data_batch_1.bin");
}

namespace {

Dataset concat(const std::vector<Dataset>& parts) {
  std::vector<torch::Tensor> images, labels;
  for (const auto& p : parts) {
    images.push_back(p.images);
    labels.push_back(p.labels);
  }
  return {torch::cat(images), torch::cat(labels)};
}

}  // namespace

DataSplit load_cifar10(const fs::path& dir, int64_t limit_train, int64_t limit_test) {
  const fs::path found = cifar_folder(dir, "CIFAR-10", "cifar-10-batches-bin",
                                      "data_batch_1.bin", "cifar-10-binary.tar.gz");
  DataSplit split;
  split.name = "cifar10";
  split.source = found.string();
  split.class_names = {"airplane", "automobile", "bird", "cat", "deer",
                       "dog",      "frog",       "horse", "ship", "truck"};
  std::vector<Dataset> parts;
  int64_t have = 0;
  for (int i = 1; i <= 5 && (limit_train <= 0 || have < limit_train); ++i) {
    const int64_t want = limit_train > 0 ? limit_train - have : 0;
    parts.push_back(read_cifar10_file(found / fmt::format("data_batch_{}.bin", i), want));
    have += parts.back().size();
  }
  split.train = concat(parts);
  split.test = read_cifar10_file(found / "test_batch.bin", limit_test);
  return split;
}

}  // namespace mgpu::data
