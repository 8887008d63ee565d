// CIFAR-10 from the official binary files (cifar-10-batches-bin/*.bin).
#pragma once

#include <filesystem>
#include <optional>

#include "data/Dataset.h"

namespace mgpu::data {

constexpr int64_t kCifarImageBytes = 3 * 32 * 32;
constexpr int64_t kCifarRecordBytes = 1 + kCifarImageBytes;  // label byte + pixels

/// Reads one batch file: records of 1 label byte (0-9) + 3,072 pixel bytes (R, G, B planes of
/// 32x32). At most max_records are kept (all when max_records <= 0), but the whole file is
/// validated. Throws InputError naming the file and the problem.
Dataset read_cifar10_file(const std::filesystem::path& file, int64_t max_records = 0);

/// The folder holding data_batch_1.bin: dir itself or dir/cifar-10-batches-bin; nullopt if neither.
std::optional<std::filesystem::path> find_cifar10_dir(const std::filesystem::path& dir);

/// data_batch_1..5.bin and test_batch.bin from dir (or dir/cifar-10-batches-bin); limits of
/// 0 take everything, otherwise the first N records (later files are not read once N is met).
DataSplit load_cifar10(const std::filesystem::path& dir, int64_t limit_train, int64_t limit_test);

}  // namespace mgpu::data
