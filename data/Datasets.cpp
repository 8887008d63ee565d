// load_data: dispatch on the data set name, with the offline default for "auto".
#include "data/Datasets.h"

#include <fmt/core.h>

#include <iostream>

#include "data/Cifar10.h"
#include "data/Download.h"
#include "data/Idx.h"
#include "data/InputError.h"

namespace mgpu::data {

Dataset Dataset::first(int64_t n) const {
  if (n <= 0 || n >= size()) return *this;
  return {images.narrow(0, 0, n), labels.narrow(0, 0, n)};
}

DataSplit load_data(const DataConfig& config) {
  const std::string& name = config.dataset;
  if (name == "cifar10") {
    const std::string dir = config.data_dir.empty() ? kDefaultDataDir : config.data_dir;
    if (config.download && !find_cifar10_dir(dir)) {
      try {
        download_and_extract(cifar10_download(), dir, std::cerr);
      } catch (const std::runtime_error& e) {
        throw std::runtime_error(fmt::format(
            "{} (CIFAR-10 is not in {}: put cifar-10-batches-bin/ there, or pass --data-dir)",
            e.what(), dir));
      }
    }
    return load_cifar10(dir, config.limit_train, config.limit_test);
  }
  if (name == "fashion-mnist") {
    const std::string dir = config.data_dir.empty() ? kFashionMnistDir : config.data_dir;
    return load_fashion_mnist(dir, config.limit_train, config.limit_test);
  }
  if (name == "auto") {
    const std::string dir = config.data_dir.empty() ? kDefaultDataDir : config.data_dir;
    if (find_cifar10_dir(dir)) return load_cifar10(dir, config.limit_train, config.limit_test);
    if (has_fashion_mnist(dir)) {
      return load_fashion_mnist(dir, config.limit_train, config.limit_test);
    }
    if (!config.data_dir.empty()) {
      throw InputError(fmt::format(
          "--data-dir {} holds neither CIFAR-10 (data_batch_1.bin, or cifar-10-batches-bin/) nor "
          "Fashion-MNIST IDX files",
          dir));
    }
    return load_fashion_mnist(kFashionMnistDir, config.limit_train, config.limit_test);
  }
  throw InputError(
      fmt::format("--dataset '{}' is unknown (expected cifar10, fashion-mnist or auto)", name));
}

}  // namespace mgpu::data
