// --dataset folder: the two layouts, the held-out split, sizes and colours, the cache, every
// bad input, and the binary trained on a folder whose class names reach predict and evaluate.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "Fixtures.h"
#include "data/ImageFolder.h"
#include "data/InputError.h"

#include <stb_image_write.h>  // the tests write their own images (StbWrite.cpp)

using namespace mgpu::data;
using mgpu::testing::TempDir;
using mgpu::testing::error_of;
namespace fs = std::filesystem;

namespace {

// A PNG of h x w pixels, all `value`, grey (channels 1) or colour (3).
void write_png(const fs::path& file, int value, int h = 6, int w = 6, int channels = 3) {
  fs::create_directories(file.parent_path());
  const std::vector<uint8_t> px(static_cast<size_t>(h * w * channels), static_cast<uint8_t>(value));
  ASSERT_TRUE(stbi_write_png(file.c_str(), w, h, channels, px.data(), w * channels));
}

// root/CLASS/i.png for each class, n images each, image i of class k all 10 * k + i.
void write_classes(const fs::path& root, const std::vector<std::string>& classes, int n) {
  for (size_t k = 0; k < classes.size(); ++k) {
    for (int i = 0; i < n; ++i) {
      write_png(root / classes[k] / fmt::format("{}.png", i), static_cast<int>(10 * k) + i);
    }
  }
}

DataSplit load(const fs::path& dir, FolderOptions options = {}) {
  std::ostringstream log;
  return load_image_folder(dir, options, log);
}

std::string log_of(const fs::path& dir, FolderOptions options = {}) {
  std::ostringstream log;
  load_image_folder(dir, options, log);
  return log.str();
}

// The class of each image by its value (10 * class + index).
void expect_labels_match_values(const Dataset& d) {
  for (int64_t i = 0; i < d.size(); ++i) {
    EXPECT_EQ(d.images[i][0][0][0].item<int64_t>() / 10, d.labels[i].item<int64_t>()) << i;
  }
}

}  // namespace

TEST(ImageFolder, TrainAndTestFoldersGiveSortedClassesAndTheirLabels) {
  TempDir tmp;
  write_classes(tmp.path() / "train", {"dog", "cat", "bird"}, 3);
  write_classes(tmp.path() / "test", {"dog", "cat", "bird"}, 2);
  std::ofstream(tmp.path() / "train" / "cat" / "notes.txt") << "not an image: ignored";
  const DataSplit d = load(tmp.path());
  EXPECT_EQ(d.name, "folder");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"bird", "cat", "dog"}));
  EXPECT_EQ(d.train.size(), 9);
  EXPECT_EQ(d.test.size(), 6);
  EXPECT_EQ(d.train.images.sizes().vec(), (std::vector<int64_t>{9, 3, 6, 6}));
  EXPECT_EQ(d.train.images.dtype(), torch::kUInt8);
  // Written as dog = 0x, cat = 1x, bird = 2x; sorted, bird is class 0: value / 10 = 2 - label.
  for (int64_t i = 0; i < d.train.size(); ++i) {
    EXPECT_EQ(d.train.images[i][0][0][0].item<int64_t>() / 10, 2 - d.train.labels[i].item<int64_t>());
  }
  // The training order is shuffled (the first N of --limit-train see every class) and fixed.
  EXPECT_GT(std::get<0>(torch::_unique(d.train.labels.narrow(0, 0, 5))).numel(), 1);
  EXPECT_TRUE(torch::equal(load(tmp.path()).train.labels, d.train.labels));
  FolderOptions limited;
  limited.limit_train = 4;
  limited.limit_test = 1;
  const DataSplit some = load(tmp.path(), limited);
  EXPECT_EQ(some.train.size(), 4);
  EXPECT_EQ(some.test.size(), 1);
  EXPECT_TRUE(torch::equal(some.train.labels, d.train.labels.narrow(0, 0, 4)));
}

TEST(ImageFolder, AHeldOutFractionOfEachClassIsTheTestSetEveryTime) {
  TempDir tmp;
  write_classes(tmp.path(), {"a", "b"}, 10);
  FolderOptions options;
  options.val_split = 0.2;
  const DataSplit d = load(tmp.path(), options);
  EXPECT_EQ(d.train.size(), 16);
  EXPECT_EQ(d.test.size(), 4);
  EXPECT_EQ(d.test.labels.eq(0).sum().item<int64_t>(), 2);  // 2 of each class
  expect_labels_match_values(d.train);
  expect_labels_match_values(d.test);
  // No image is in both: the values 10 * k + i are all distinct.
  auto values = torch::cat({d.train.images.select(1, 0).select(1, 0).select(1, 0),
                            d.test.images.select(1, 0).select(1, 0).select(1, 0)});
  EXPECT_EQ(std::get<0>(torch::_unique(values)).numel(), 20);
  const DataSplit again = load(tmp.path(), options);
  EXPECT_TRUE(torch::equal(again.test.images, d.test.images));
}

TEST(ImageFolder, ImagesTakeTheFirstImagesSizeAndColourOrTheGivenSize) {
  TempDir tmp;
  write_png(tmp.path() / "train" / "a" / "0.png", 100, 8, 5, 1);  // the first: grey 8x5
  write_png(tmp.path() / "train" / "a" / "1.png", 100, 16, 10, 1);
  write_png(tmp.path() / "test" / "a" / "0.png", 100, 3, 3, 1);
  DataSplit d = load(tmp.path());
  EXPECT_EQ(d.train.images.sizes().vec(), (std::vector<int64_t>{2, 1, 8, 5}));
  EXPECT_EQ(d.test.images.sizes().vec(), (std::vector<int64_t>{1, 1, 8, 5}));
  EXPECT_EQ(d.test.images[0][0][4][2].item<int64_t>(), 100);
  FolderOptions options;
  options.height = 4;
  options.width = 7;
  d = load(tmp.path(), options);
  EXPECT_EQ(d.train.images.sizes().vec(), (std::vector<int64_t>{2, 1, 4, 7}));
}

TEST(ImageFolder, TheCacheIsReusedUntilAFileChangesAndIsWrittenWhole) {
  TempDir tmp;
  write_classes(tmp.path() / "train", {"a", "b"}, 2);
  write_classes(tmp.path() / "test", {"a", "b"}, 1);
  EXPECT_NE(log_of(tmp.path()).find("decoding"), std::string::npos);
  EXPECT_TRUE(fs::exists(tmp.path() / ".mgpu-cache-6x6x3.pt"));
  const std::string second = log_of(tmp.path());
  EXPECT_EQ(second.find("decoding"), std::string::npos) << second;
  EXPECT_NE(second.find("from the cache"), std::string::npos) << second;
  // A changed file (another size: the cache cannot be fooled by the same time) is decoded again.
  write_png(tmp.path() / "train" / "a" / "1.png", 77, 6, 6, 1 + 2);
  std::ofstream(tmp.path() / "train" / "a" / "1.png", std::ios::app) << "trailing bytes";
  EXPECT_NE(log_of(tmp.path()).find("decoding"), std::string::npos);
  const DataSplit d = load(tmp.path());
  EXPECT_EQ(d.train.images.eq(77).any().item<bool>(), true);
  // An added file too.
  write_png(tmp.path() / "train" / "b" / "9.png", 99);
  EXPECT_EQ(load(tmp.path()).train.size(), 5);
  // A damaged cache is decoded again, not an error; no partial file is ever left.
  std::ofstream(tmp.path() / ".mgpu-cache-6x6x3.pt", std::ios::trunc) << "garbage";
  EXPECT_EQ(load(tmp.path()).train.size(), 5);
  for (const auto& name : mgpu::testing::list_dir(tmp.path())) {
    EXPECT_EQ(name.find(".part"), std::string::npos) << name;
  }
}

// A cache that cannot be written (here: a folder where its temporary file would go, which even
// root cannot write into) costs a warning, not the run.
TEST(ImageFolder, ACacheThatCannotBeWrittenIsAWarning) {
  TempDir tmp;
  write_classes(tmp.path() / "train", {"a"}, 1);
  write_classes(tmp.path() / "test", {"a"}, 1);
  fs::create_directories(tmp.path() / fmt::format(".mgpu-cache-6x6x3.pt.{}.part", ::getpid()) / "x");
  const std::string log = log_of(tmp.path());
  EXPECT_NE(log.find("warning: cannot write the image cache"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(tmp.path() / ".mgpu-cache-6x6x3.pt"));
}

TEST(ImageFolder, EveryBadInputNamesTheFolderClassOrFile) {
  TempDir tmp;
  const auto expect_error = [&](const fs::path& dir, const std::string& expected,
                                FolderOptions options = {}) {
    const auto message = error_of([&] { load(dir, options); });
    EXPECT_NE(message.find(expected), std::string::npos) << message;
  };
  expect_error(tmp.path() / "none", "is not a folder");
  fs::create_directories(tmp.path() / "empty");
  FolderOptions split;
  split.val_split = 0.5;
  expect_error(tmp.path() / "empty", "has no class folders", split);
  expect_error(tmp.path() / "empty", "no train/ and test/ folders: give --val-split");

  const auto d = tmp.path() / "d";
  write_classes(d / "train", {"cat", "dog"}, 2);
  write_classes(d / "test", {"cat", "dog"}, 1);
  fs::create_directories(d / "train" / "emu");
  expect_error(d, "class folder " + (d / "train" / "emu").string() + " has no image files");
  fs::remove(d / "train" / "emu");
  write_classes(d / "test", {"fox"}, 1);
  expect_error(d, "test class 'fox' (" + (d / "test" / "fox").string() +
                      ") is not a training class (the classes of " + (d / "train").string() +
                      ": cat, dog)");
  mgpu::testing::remove_tree(d / "test" / "fox");
  expect_error(d, "--val-split is for a folder of class folders", split);
  std::ofstream(d / "train" / "cat" / "empty.png");
  expect_error(d, "image " + (d / "train" / "cat" / "empty.png").string() + " is empty (0 bytes)");
  std::ofstream(d / "train" / "cat" / "empty.png") << "not a picture";
  expect_error(d, "image " + (d / "train" / "cat" / "empty.png").string() + " cannot be decoded");
  fs::remove(d / "train" / "cat" / "empty.png");
  write_png(d / "train" / "dog" / "grey.png", 5, 6, 6, 1);
  expect_error(d, "image " + (d / "train" / "dog" / "grey.png").string() +
                      " is grey but the folder's first image, " +
                      (d / "train" / "cat" / "0.png").string() + ", is colour");
  fs::remove(d / "train" / "dog" / "grey.png");
  mgpu::testing::remove_tree(d / "test");
  expect_error(d, "has train/ but no test/");
  // Nothing was cached for a folder that failed.
  for (const auto& name : mgpu::testing::list_dir(d)) {
    EXPECT_EQ(name.find(".mgpu-cache"), std::string::npos) << name;
  }
}

TEST(ImageFolder, SkipBadImagesCountsThemAndKeepsTheRest) {
  TempDir tmp;
  write_classes(tmp.path() / "train", {"a", "b"}, 3);
  write_classes(tmp.path() / "test", {"a", "b"}, 1);
  std::ofstream(tmp.path() / "train" / "a" / "bad.jpg") << "not a jpeg";
  std::ofstream(tmp.path() / "train" / "b" / "zero.png");
  FolderOptions options;
  options.skip_bad_images = true;
  std::ostringstream log;
  const DataSplit d = load_image_folder(tmp.path(), options, log);
  EXPECT_EQ(d.train.size(), 6);
  expect_labels_match_values(d.train);
  EXPECT_NE(log.str().find("warning: skipped 2 image files that cannot be decoded"),
            std::string::npos)
      << log.str();
  // The counts are of the images kept; the skipped files are counted apart.
  EXPECT_NE(log.str().find("decoded 8 images in"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("(2 undecodable files skipped)"), std::string::npos) << log.str();
  // The warning again from the cache, and without the flag the same files are errors.
  const std::string cached = log_of(tmp.path(), options);
  EXPECT_NE(cached.find("skipped 2"), std::string::npos) << cached;
  EXPECT_NE(cached.find("8 images of " + tmp.path().string() + " from the cache"),
            std::string::npos)
      << cached;
  EXPECT_NE(error_of([&] { load(tmp.path()); }).find("bad.jpg cannot be decoded"),
            std::string::npos);
  // With the flag, a folder of nothing but bad files is an error that names the folder.
  TempDir all_bad;
  for (const char* split : {"train", "test"}) {
    fs::create_directories(all_bad.path() / split / "a");
    std::ofstream(all_bad.path() / split / "a" / "bad.png") << "not a png";
  }
  const std::string error = error_of([&] { load(all_bad.path(), options); });
  EXPECT_NE(error.find(fmt::format("none of the 2 image files of {} can be decoded",
                                   all_bad.path().string())),
            std::string::npos)
      << error;
}

namespace {

// Flips every byte of the first run of n bytes equal to value in file (the pixels of an
// image of that value, inside the cache's images tensor); false if there is none.
bool flip_run(const fs::path& file, char value, size_t n) {
  std::ifstream in(file, std::ios::binary);
  std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const auto at = bytes.find(std::string(n, value));
  if (at == std::string::npos) return false;
  for (size_t i = at; i < at + n; ++i) bytes[i] = static_cast<char>(~bytes[i]);
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  return true;
}

// A 1x1 GIF whose one pixel is the colour (r, g, b) of its table.
std::vector<uint8_t> gif_pixel(uint8_t r, uint8_t g, uint8_t b) {
  return {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, r, g, b, 0, 0, 0,
          0x2c, 0,   0,   0,   0,   1,   0, 1, 0, 0, 2,    2, 0x44, 0x01, 0, 0x3b};
}

}  // namespace

// A cache whose pixel bytes changed is not trained on: its checksum fails, a warning says so,
// and the images are decoded again (and the cache rewritten).
TEST(ImageFolder, ACacheWhosePixelsChangedIsDecodedAgainWithAWarning) {
  TempDir tmp;
  write_classes(tmp.path() / "train", {"a", "b"}, 3);
  write_classes(tmp.path() / "test", {"a", "b"}, 1);
  const DataSplit before = load(tmp.path());
  const auto cache = tmp.path() / ".mgpu-cache-6x6x3.pt";
  ASSERT_TRUE(flip_run(cache, 12, 6 * 6 * 3)) << "image 2 of class b (value 12) not in the cache";
  std::ostringstream log;
  const DataSplit after = load_image_folder(tmp.path(), {}, log);
  EXPECT_NE(log.str().find("warning: the image cache " + cache.string() + " is damaged"),
            std::string::npos)
      << log.str();
  EXPECT_NE(log.str().find("decoding"), std::string::npos) << log.str();
  EXPECT_TRUE(torch::equal(after.train.images, before.train.images));
  const std::string again = log_of(tmp.path());  // the rewritten cache is good
  EXPECT_NE(again.find("from the cache"), std::string::npos) << again;
  EXPECT_EQ(again.find("warning"), std::string::npos) << again;
}

// A folder keeps one cache: the one for the size last used.
TEST(ImageFolder, ACacheOfAnotherSizeReplacesTheOldOne) {
  TempDir tmp;
  write_classes(tmp.path() / "train", {"a"}, 2);
  write_classes(tmp.path() / "test", {"a"}, 1);
  load(tmp.path());
  FolderOptions small;
  small.height = small.width = 4;
  const std::string log = log_of(tmp.path(), small);
  EXPECT_NE(log.find("removed the older image cache " +
                     (tmp.path() / ".mgpu-cache-6x6x3.pt").string()),
            std::string::npos)
      << log;
  EXPECT_FALSE(fs::exists(tmp.path() / ".mgpu-cache-6x6x3.pt"));
  EXPECT_TRUE(fs::exists(tmp.path() / ".mgpu-cache-4x4x3.pt"));
}

// With --skip-bad-images a class none of whose files decodes is an error, as an empty class
// is, and a folder that fails writes no cache.
TEST(ImageFolder, AClassWithNoDecodableImageIsAnErrorAndNoCacheIsWritten) {
  FolderOptions skip;
  skip.skip_bad_images = true;
  TempDir tmp;
  write_classes(tmp.path() / "train", {"a", "b"}, 2);
  fs::create_directories(tmp.path() / "test" / "a");
  std::ofstream(tmp.path() / "test" / "a" / "bad.png") << "not a png";
  std::string error = error_of([&] { load(tmp.path(), skip); });
  EXPECT_NE(error.find("class folder " + (tmp.path() / "test" / "a").string() +
                       ": none of its 1 image files can be decoded"),
            std::string::npos)
      << error;
  write_classes(tmp.path() / "test", {"a", "b"}, 1);
  std::ofstream(tmp.path() / "train" / "c.png");  // not a class: ignored
  fs::create_directories(tmp.path() / "train" / "c");
  std::ofstream(tmp.path() / "train" / "c" / "zero.png");
  error = error_of([&] { load(tmp.path(), skip); });
  EXPECT_NE(error.find("class folder " + (tmp.path() / "train" / "c").string() +
                       ": none of its 1 image files can be decoded"),
            std::string::npos)
      << error;
  for (const auto& name : mgpu::testing::list_dir(tmp.path())) {
    EXPECT_EQ(name.find(".mgpu-cache"), std::string::npos) << name;
  }
}

// An error while decoding starts on a line of its own, not after the progress bar.
TEST(ImageFolder, AnErrorWhileDecodingEndsTheProgressBarsLine) {
  TempDir tmp;
  write_classes(tmp.path() / "train", {"a"}, 2);
  write_classes(tmp.path() / "test", {"a"}, 1);
  std::ofstream(tmp.path() / "train" / "a" / "5.png") << "not a png";
  std::ostringstream log;
  EXPECT_THROW(load_image_folder(tmp.path(), {}, log), InputError);
  ASSERT_FALSE(log.str().empty());
  EXPECT_NE(log.str().find("decoding"), std::string::npos) << log.str();
  EXPECT_EQ(log.str().back(), '\n') << log.str();
}

// GIF has no grey mode: a GIF whose colours are all grey belongs in a grey folder (and fits a
// colour one); a GIF with colour does not fit a grey folder.
TEST(ImageFolder, AGreyGifIsGrey) {
  TempDir tmp;
  write_png(tmp.path() / "train" / "a" / "0.png", 50, 6, 6, 1);
  mgpu::testing::write_bytes(tmp.path() / "train" / "a" / "1.gif", gif_pixel(0x80, 0x80, 0x80));
  write_png(tmp.path() / "test" / "a" / "0.png", 50, 6, 6, 1);
  DataSplit d = load(tmp.path());
  EXPECT_EQ(d.train.images.sizes().vec(), (std::vector<int64_t>{2, 1, 6, 6}));
  EXPECT_TRUE(d.train.images.eq(0x80).any().item<bool>());
  write_png(tmp.path() / "train" / "a" / "0.png", 50, 6, 6, 3);  // now a colour folder
  write_png(tmp.path() / "test" / "a" / "0.png", 50, 6, 6, 3);
  d = load(tmp.path());
  EXPECT_EQ(d.train.images.sizes().vec(), (std::vector<int64_t>{2, 3, 6, 6}));
  write_png(tmp.path() / "train" / "a" / "0.png", 50, 6, 6, 1);  // grey again, a red GIF
  write_png(tmp.path() / "test" / "a" / "0.png", 50, 6, 6, 1);
  mgpu::testing::write_bytes(tmp.path() / "train" / "a" / "1.gif", gif_pixel(0xff, 0, 0));
  const std::string error = error_of([&] { load(tmp.path()); });
  EXPECT_NE(error.find("1.gif is colour but the folder's first image"), std::string::npos)
      << error;
}

// The default size is the first file's by name, whatever images --val-split holds out.
TEST(ImageFolder, TheDefaultSizeIsTheFirstFilesByName) {
  TempDir tmp;
  write_png(tmp.path() / "a" / "00.png", 1, 8, 5);
  for (int i = 1; i < 10; ++i) write_png(tmp.path() / "a" / fmt::format("{:02}.png", i), 1, 6, 6);
  write_classes(tmp.path(), {"b"}, 4);
  for (double split : {0.2, 0.5, 0.7}) {
    FolderOptions options;
    options.val_split = split;
    const DataSplit d = load(tmp.path(), options);
    EXPECT_EQ(d.train.images.sizes().slice(2).vec(), (std::vector<int64_t>{8, 5})) << split;
  }
}

// The shape is checked before anything is decoded: a refusal costs no decoding and no cache.
TEST(ImageFolder, TheShapeIsCheckedBeforeDecoding) {
  TempDir tmp;
  write_classes(tmp.path() / "train", {"a", "b", "c"}, 2);
  write_classes(tmp.path() / "test", {"a", "b", "c"}, 1);
  FolderOptions options;
  std::vector<int64_t> seen;
  options.check_shape = [&](int64_t c, int64_t h, int64_t w, int64_t k) {
    seen = {c, h, w, k};
    throw InputError("this model takes no 6x6 images");
  };
  std::ostringstream log;
  EXPECT_THROW(load_image_folder(tmp.path(), options, log), InputError);
  EXPECT_EQ(seen, (std::vector<int64_t>{3, 6, 6, 3}));
  EXPECT_EQ(log.str().find("decoding"), std::string::npos) << log.str();
  EXPECT_FALSE(fs::exists(tmp.path() / ".mgpu-cache-6x6x3.pt"));
}

// As users run it: train on a folder, then predict and evaluate print its class names.
TEST(ImageFolderBinary, TrainPredictAndEvaluateUseTheFoldersClassNames) {
  TempDir tmp;
  const auto data = tmp.path() / "shapes";
  const auto patterns =
      mgpu::testing::pattern_dataset(48, 3, {/*classes=*/3, /*channels=*/3, /*size=*/16, 2, 30});
  const std::vector<std::string> names = {"horizontal", "vertical", "checkerboard"};
  for (int64_t i = 0; i < patterns.size(); ++i) {
    const auto hwc = patterns.images[i].permute({1, 2, 0}).contiguous();
    const auto label = patterns.labels[i].item<int64_t>();
    const auto file = data / names[static_cast<size_t>(label)] / fmt::format("{}.png", i);
    fs::create_directories(file.parent_path());
    ASSERT_TRUE(stbi_write_png(file.c_str(), 16, 16, 3, hwc.data_ptr<uint8_t>(), 16 * 3));
  }
  const auto run = tmp.path() / "run";
  auto r = mgpu::testing::run_mgpu(fmt::format(
      "train --gpus 0 --threads 1 --dataset folder --data-dir {} --val-split 0.25 "
      "--image-size 32x32 --epochs 2 --batch-per-device 8 --verbose 0 --out-dir {}",
      data.string(), run.string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("decoding"), std::string::npos) << r.err;
  r = mgpu::testing::run_mgpu(fmt::format("predict --gpus 0 --weights {} {}", run.string(),
                                          (data / "vertical" / "1.png").string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.out.find("horizontal") != std::string::npos ||
              r.out.find("vertical") != std::string::npos ||
              r.out.find("checkerboard") != std::string::npos)
      << r.out;
  r = mgpu::testing::run_mgpu(fmt::format(
      "evaluate --gpus 0 --weights {} --dataset folder --data-dir {} --val-split 0.25",
      run.string(), data.string()));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("12 test images"), std::string::npos) << r.out;  // a quarter of 48
  EXPECT_NE(r.out.find("checkerboard"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("from the cache"), std::string::npos) << r.err;  // 32x32, as trained
}
