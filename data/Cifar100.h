// CIFAR-100 from the official binary files (cifar-100-binary/train.bin and test.bin): records
// of a coarse label byte (0-19), a fine label byte (0-99) and 3,072 pixel bytes.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "data/Dataset.h"

namespace mgpu::data {

/// The folder holding train.bin: dir itself or dir/cifar-100-binary; nullopt if neither.
std::optional<std::filesystem::path> find_cifar100_dir(const std::filesystem::path& dir);

/// train.bin and test.bin from dir (or dir/cifar-100-binary), labelled with the 100 fine
/// classes (labels "fine", DataSplit::name "cifar100") or the 20 coarse superclasses (labels
/// "coarse", name "cifar100-coarse"), as Keras's cifar100.load_data(label_mode) does. Limits of
/// 0 take everything, otherwise the first N records. Throws InputError naming what is wrong.
DataSplit load_cifar100(const std::filesystem::path& dir, const std::string& labels,
                        int64_t limit_train, int64_t limit_test);

}  // namespace mgpu::data
