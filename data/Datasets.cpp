// load_data: dispatch on the data set name, with the offline default for "auto".
#include "data/Datasets.h"

#include <fmt/core.h>

#include <iostream>

#include "data/Cifar10.h"
#include "data/Cifar100.h"
#include "data/Download.h"
#include "data/Idx.h"
#include "data/ImageFolder.h"
#include "data/InputError.h"

namespace mgpu::data {

Dataset Dataset::first(int64_t n) const {
  if (n <= 0 || n >= size()) return *this;
  return {images.narrow(0, 0, n), labels.narrow(0, 0, n)};
}

namespace {

// Downloads spec's archive into dir unless `present` or downloads are off.
void fetch_unless_present(const DataConfig& config, bool present, const DownloadSpec& spec,
                          const std::string& dir) {
  if (present || !config.download) return;
  try {
    download_and_extract(spec, dir, std::cerr);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(fmt::format("{} ({} is not in {}: put {}/ there, or pass --data-dir)",
                                         e.what(), spec.name, dir, spec.folder));
  }
}

}  // namespace

DataSplit load_data(const DataConfig& config) {
  const std::string& name = config.dataset;
  if (name != "cifar100" && config.labels != "fine") {
    throw InputError(fmt::format("--labels {} is for --dataset cifar100, not {}", config.labels,
                                 name));
  }
  // The shapes of the fixed data sets are known before their files are read.
  const auto check = [&](int64_t channels, int64_t height, int64_t width, int64_t classes) {
    if (config.check_shape) config.check_shape(channels, height, width, classes);
  };
  if (name == "cifar10") {
    check(3, 32, 32, 10);
    const std::string dir = config.data_dir.empty() ? kDefaultDataDir : config.data_dir;
    fetch_unless_present(config, find_cifar10_dir(dir).has_value(), cifar10_download(), dir);
    return load_cifar10(dir, config.limit_train, config.limit_test);
  }
  if (name == "cifar100") {
    check(3, 32, 32, config.labels == "coarse" ? 20 : 100);
    const std::string dir = config.data_dir.empty() ? kDefaultDataDir : config.data_dir;
    fetch_unless_present(config, find_cifar100_dir(dir).has_value(), cifar100_download(), dir);
    return load_cifar100(dir, config.labels, config.limit_train, config.limit_test);
  }
  if (name == "folder") {
    if (config.data_dir.empty()) {
      throw InputError("--dataset folder needs --data-dir (a folder of class folders of images)");
    }
    FolderOptions options;
    options.val_split = config.val_split;
    options.height = config.image_height;
    options.width = config.image_width;
    options.skip_bad_images = config.skip_bad_images;
    options.limit_train = config.limit_train;
    options.limit_test = config.limit_test;
    options.check_shape = config.check_shape;
    return load_image_folder(config.data_dir, options, std::cerr);
  }
  if (name == "fashion-mnist") {
    check(1, 28, 28, 10);
    const std::string dir = config.data_dir.empty() ? kFashionMnistDir : config.data_dir;
    return load_fashion_mnist(dir, config.limit_train, config.limit_test);
  }
  if (name == "auto") {
    const std::string dir = config.data_dir.empty() ? kDefaultDataDir : config.data_dir;
    if (find_cifar10_dir(dir)) {
      check(3, 32, 32, 10);
      return load_cifar10(dir, config.limit_train, config.limit_test);
    }
    const bool here = has_fashion_mnist(dir);
    if (!here && !config.data_dir.empty()) {
      throw InputError(fmt::format(
          "--data-dir {} holds neither CIFAR-10 (data_batch_1.bin, or cifar-10-batches-bin/) nor "
          "Fashion-MNIST IDX files",
          dir));
    }
    check(1, 28, 28, 10);
    return load_fashion_mnist(here ? dir : kFashionMnistDir, config.limit_train, config.limit_test);
  }
  throw InputError(fmt::format(
      "--dataset '{}' is unknown (expected cifar10, cifar100, fashion-mnist, folder or auto)",
      name));
}

DataConfig data_set_named(DataConfig config, const std::string& trained) {
  config.dataset = trained;
  if (trained == "cifar100-coarse") {
    config.dataset = "cifar100";
    config.labels = "coarse";
  }
  return config;
}

}  // namespace mgpu::data
