// Picks and loads the data set a run asks for (CIFAR-10, CIFAR-100 or Fashion-MNIST).
#pragma once

#include <functional>
#include <string>

#include "data/Dataset.h"

namespace mgpu::data {

inline const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
inline const char* kDefaultDataDir = "data";

struct DataConfig {
  /// "cifar10", "cifar100", "fashion-mnist", "folder" (an image folder), or "auto": CIFAR-10 when its files are in data_dir,
  /// else Fashion-MNIST (from data_dir if there, else from Debian's kFashionMnistDir).
  std::string dataset = "auto";
  /// Empty: kDefaultDataDir for CIFAR-10, kFashionMnistDir for Fashion-MNIST.
  std::string data_dir;
  /// With "cifar10" or "cifar100": fetch the official archive into data_dir if its files are
  /// not there.
  bool download = true;
  /// With "cifar100": "fine" (100 classes) or "coarse" (20 superclasses).
  std::string labels = "fine";
  /// With "folder" (data_dir required): data/ImageFolder.h.
  double val_split = 0;
  int64_t image_height = 0, image_width = 0;  // 0: the first image's size
  bool skip_bad_images = false;
  int64_t limit_train = 0;  // 0: all records
  int64_t limit_test = 0;
  /// Called with the images' shape and the class count before the data is read (an image
  /// folder: before its images are decoded); throws to refuse them (a model that cannot take
  /// them).
  std::function<void(int64_t channels, int64_t height, int64_t width, int64_t classes)>
      check_shape;
};

/// Throws InputError for an unknown name or missing/invalid files.
DataSplit load_data(const DataConfig& config);

/// config set to load the data set that DataSplit::name `trained` came from (a weights file's
/// data set: "cifar100-coarse" is CIFAR-100 with coarse labels).
DataConfig data_set_named(DataConfig config, const std::string& trained);

}  // namespace mgpu::data
