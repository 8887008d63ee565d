// CIFAR-10 from the official binary files (cifar-10-batches-bin/*.bin), and the record reader
// that CIFAR-100 shares.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "data/Dataset.h"

namespace mgpu::data {

constexpr int64_t kCifarImageBytes = 3 * 32 * 32;
constexpr int64_t kCifarRecordBytes = 1 + kCifarImageBytes;  // label byte + pixels

/// One binary CIFAR format: the label bytes in front of each record's 3,072 pixel bytes.
struct CifarFormat {
  std::string name;                       // "CIFAR-10", for messages
  std::vector<std::string> label_names;   // each label byte's name: "label", "fine label", ...
  std::vector<int64_t> label_classes;     // how many classes each label byte has
  size_t label_used = 0;                  // which label byte becomes Dataset::labels
};

/// Reads one file of `format` records. At most max_records are kept (all when max_records
/// <= 0), but the whole file is validated: its size, and every label byte of every record.
/// Throws InputError naming the file, the record and the problem.
Dataset read_cifar_file(const std::filesystem::path& file, const CifarFormat& format,
                        int64_t max_records = 0);

/// Where a CIFAR data set's files are: the folder holding first_file, dir itself or
/// dir/folder; nullopt if neither.
std::optional<std::filesystem::path> find_cifar_folder(const std::filesystem::path& dir,
                                                       const std::string& folder,
                                                       const std::string& first_file);

/// find_cifar_folder, or an InputError that names the data set, both places looked at and the
/// official archive.
std::filesystem::path cifar_folder(const std::filesystem::path& dir, const std::string& name,
                                   const std::string& folder, const std::string& first_file,
                                   const std::string& archive);

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
