// Image folders, as Keras's flow_from_directory and torchvision's ImageFolder read them:
// DIR/train/CLASS/* and DIR/test/CLASS/*, or DIR/CLASS/* with a fraction of each class held
// out for testing. Decoded once into a uint8 cache beside the images.
#pragma once

#include <filesystem>
#include <ostream>

#include "data/Dataset.h"

namespace mgpu::data {

struct FolderOptions {
  /// With DIR/CLASS/* (no train/ and test/): the fraction of each class held out as the test
  /// set, the same images every time (a fixed seed, not --seed).
  double val_split = 0;
  /// Every image is resized to height x width; 0: the first training image's size.
  int64_t height = 0, width = 0;
  /// An empty or undecodable file is a counted warning instead of an error.
  bool skip_bad_images = false;
  int64_t limit_train = 0, limit_test = 0;  // 0: all; else the first N of the shuffled sets
};

/// The data set in dir: class names are the class folders' names, sorted; a test class must
/// be a training class. Files whose extension stb_image does not read are ignored, as are
/// names that start with a dot. Images are converted to the first image's colour (grey or
/// RGB; a file of the other kind is an error), resized, and kept as uint8. The decoded images
/// are cached in dir/.mgpu-cache-HxWxC.pt, reused while no file was added, removed or changed
/// (size or modification time), and written atomically; when dir is read-only a warning on
/// `log` says so. A progress bar on `log` while decoding. Throws InputError naming the folder,
/// class or file for every bad input.
DataSplit load_image_folder(const std::filesystem::path& dir, const FolderOptions& options,
                            std::ostream& log);

}  // namespace mgpu::data
