// Image folders, as Keras's flow_from_directory and torchvision's ImageFolder read them:
// DIR/train/CLASS/* and DIR/test/CLASS/*, or DIR/CLASS/* with a fraction of each class held
// out for testing. Decoded once into a uint8 cache beside the images.
#pragma once

#include <filesystem>
#include <functional>
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
  /// Called with the images' shape and the class count once they are known, before any image
  /// is decoded; throws (InputError) to refuse them, e.g. for a model that cannot take them.
  std::function<void(int64_t channels, int64_t height, int64_t width, int64_t classes)>
      check_shape;
};

/// The data set in dir: class names are the class folders' names, sorted; a test class must
/// be a training class. Files whose extension stb_image does not read are ignored, as are
/// names that start with a dot. The first image is the first file by name of the first class
/// folder (of train/ when there is one): its size is the default size and its colour (grey or
/// RGB) every image's; a file of the other kind is an error, except a GIF of greys, which fits
/// both. Images are resized and kept as uint8. The decoded images are cached in
/// dir/.mgpu-cache-HxWxC.pt with a checksum, reused while no file was added, removed or changed
/// (size or modification time) and the checksum holds (else decoded again, with a warning for
/// a damaged cache), written atomically and only when the folder loads; a folder keeps one
/// cache (writing one removes those of other sizes); when dir is read-only a warning on `log`
/// says so. A progress bar on `log` while decoding. Throws InputError naming the folder, class
/// or file for every bad input, including a class none of whose files decodes.
DataSplit load_image_folder(const std::filesystem::path& dir, const FolderOptions& options,
                            std::ostream& log);

}  // namespace mgpu::data
