// Picks and loads the data set a run asks for (CIFAR-10 or Fashion-MNIST).
#pragma once

#include <string>

#include "data/Dataset.h"

namespace mgpu::data {

inline const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
inline const char* kDefaultDataDir = "data";

struct DataConfig {
  /// "cifar10", "fashion-mnist", or "auto": CIFAR-10 when its files are in data_dir,
  /// else Fashion-MNIST (from data_dir if there, else from Debian's kFashionMnistDir).
  std::string dataset = "auto";
  /// Empty: kDefaultDataDir for CIFAR-10, kFashionMnistDir for Fashion-MNIST.
  std::string data_dir;
  /// With "cifar10": fetch the official archive into data_dir if its files are not there.
  bool download = true;
  int64_t limit_train = 0;  // 0: all records
  int64_t limit_test = 0;
};

/// Throws InputError for an unknown name or missing/invalid files.
DataSplit load_data(const DataConfig& config);

}  // namespace mgpu::data
