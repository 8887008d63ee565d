// load_image_folder: list the classes and files, split, decode (or read the cache), assemble.
#include "data/ImageFolder.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <functional>
#include <iterator>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "data/Image.h"       // defines: probe_image, decode_image
#include "data/ImageCache.h"  // defines: Decoded, cache_key, read_cache, write_cache
#include "data/InputError.h"  // defines: InputError
#include "data/TextBar.h"     // defines: TextBar
#include "data/ReadFile.h"  // defines: read_file

namespace mgpu::data {
namespace fs = std::filesystem;

namespace {

// The split and the order of the images do not depend on --seed: runs with other seeds train
// and test on the same images.
constexpr uint64_t kFolderSeed = 2017;

struct ClassFolder {
  std::string name;
  std::vector<fs::path> files;  // sorted
};

bool is_image_name(const fs::path& file) {
  static const std::set<std::string> kExtensions = {".png", ".jpg", ".jpeg", ".bmp",
                                                    ".gif", ".tga", ".psd",  ".hdr",
                                                    ".pic", ".pnm", ".ppm",  ".pgm"};
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return file.filename().string()[0] != '.' && kExtensions.count(ext) > 0;
}

// root's class folders, sorted by name, each with its image files; throws if there is none or
// one has no images.
std::vector<ClassFolder> list_classes(const fs::path& root) {
  std::vector<ClassFolder> classes;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name[0] != '.' && entry.is_directory(ec)) classes.push_back({name, {}});
  }
  if (ec) throw InputError(fmt::format("cannot list {}: {}", root.string(), ec.message()));
  if (classes.empty()) {
    throw InputError(fmt::format("{} has no class folders (expected {}/CLASS/image files)",
                                 root.string(), root.string()));
  }
  std::sort(classes.begin(), classes.end(),
            [](const ClassFolder& a, const ClassFolder& b) { return a.name < b.name; });
  for (auto& c : classes) {
    for (const auto& entry : fs::directory_iterator(root / c.name, ec)) {
      if (is_image_name(entry.path()) && entry.is_regular_file(ec)) c.files.push_back(entry.path());
    }
    if (c.files.empty()) {
      throw InputError(fmt::format("class folder {} has no image files (PNG, JPEG, BMP, GIF, TGA, "
                                   "PSD, HDR, PIC or PNM)",
                                   (root / c.name).string()));
    }
    std::sort(c.files.begin(), c.files.end());
  }
  return classes;
}

template <typename T>
void shuffle_fixed(std::vector<T>& items, uint64_t seed) {
  std::mt19937_64 rng(seed);  // its output is the same everywhere; std::shuffle's use is not
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[rng() % i]);
}

struct Labelled {
  size_t file;  // index into the list of all files
  int64_t label;
};

// A class folder's files: files[begin, end) of the listing, sorted by name.
struct FolderSpan {
  fs::path folder;
  size_t begin = 0, end = 0;
};

struct Listing {
  std::vector<std::string> class_names;
  std::vector<fs::path> files;  // training classes' files first, then the test folder's
  std::vector<Labelled> train, test;
  std::vector<FolderSpan> folders;  // in the order of files
};

std::vector<std::string> names_of(const std::vector<ClassFolder>& classes) {
  std::vector<std::string> names;
  for (const auto& c : classes) names.push_back(c.name);
  return names;
}

// DIR/train/CLASS and DIR/test/CLASS.
Listing list_split_folders(const fs::path& dir) {
  Listing out;
  const auto train = list_classes(dir / "train");
  out.class_names = names_of(train);
  for (size_t k = 0; k < train.size(); ++k) {
    out.folders.push_back({dir / "train" / train[k].name, out.files.size(), 0});
    for (const auto& f : train[k].files) {
      out.train.push_back({out.files.size(), static_cast<int64_t>(k)});
      out.files.push_back(f);
    }
    out.folders.back().end = out.files.size();
  }
  for (const auto& c : list_classes(dir / "test")) {
    const auto it = std::find(out.class_names.begin(), out.class_names.end(), c.name);
    if (it == out.class_names.end()) {
      throw InputError(fmt::format(
          "test class '{}' ({}) is not a training class (the classes of {}: {})", c.name,
          (dir / "test" / c.name).string(), (dir / "train").string(),
          fmt::join(out.class_names, ", ")));
    }
    out.folders.push_back({dir / "test" / c.name, out.files.size(), 0});
    for (const auto& f : c.files) {
      out.test.push_back({out.files.size(), it - out.class_names.begin()});
      out.files.push_back(f);
    }
    out.folders.back().end = out.files.size();
  }
  return out;
}

// DIR/CLASS, the fraction val_split of each class held out.
Listing list_held_out(const fs::path& dir, double val_split) {
  Listing out;
  const auto classes = list_classes(dir);
  out.class_names = names_of(classes);
  for (size_t k = 0; k < classes.size(); ++k) {
    const auto& files = classes[k].files;  // sorted by name, and listed so
    const auto n = static_cast<int64_t>(files.size());
    std::vector<int64_t> order(files.size());  // the held-out images: the first of a shuffle
    std::iota(order.begin(), order.end(), 0);
    shuffle_fixed(order, kFolderSeed + k);
    const auto held = static_cast<int64_t>(std::llround(val_split * static_cast<double>(n)));
    if (held >= n) {
      throw InputError(fmt::format(
          "class folder {} has {} images: holding out {} of them (--val-split {}) leaves none "
          "to train on",
          (dir / classes[k].name).string(), n, held, val_split));
    }
    std::vector<bool> held_out(files.size(), false);
    for (int64_t i = 0; i < held; ++i) {
      held_out[static_cast<size_t>(order[static_cast<size_t>(i)])] = true;
    }
    out.folders.push_back({dir / classes[k].name, out.files.size(), 0});
    for (size_t i = 0; i < files.size(); ++i) {
      (held_out[i] ? out.test : out.train).push_back({out.files.size(), static_cast<int64_t>(k)});
      out.files.push_back(files[i]);
    }
    out.folders.back().end = out.files.size();
  }
  if (out.test.empty()) {
    throw InputError(fmt::format("--val-split {} holds out no image of {} (its classes are too "
                                 "small): give a larger fraction",
                                 val_split, dir.string()));
  }
  return out;
}

std::string read_bytes(const fs::path& file) { return read_file(file, "image"); }

// The size and colour of the first image that can be read (every later one must match), and
// that image.
std::pair<ImageInfo, fs::path> first_image(const fs::path& dir,
                                           const std::vector<fs::path>& files,
                                           const FolderOptions& options) {
  for (const auto& f : files) {
    try {
      ImageInfo info = probe_image(read_bytes(f), f.string());
      if (options.height > 0) info.height = options.height;
      if (options.width > 0) info.width = options.width;
      return {info, f};
    } catch (const InputError&) {
      if (!options.skip_bad_images) throw;
    }
  }
  throw InputError(
      fmt::format("none of the {} image files of {} can be decoded", files.size(), dir.string()));
}

Decoded decode_all(const fs::path& dir, const std::vector<fs::path>& files, const ImageInfo& shape,
                   const fs::path& first, const FolderOptions& options, std::ostream& log) {
  const auto n = static_cast<int64_t>(files.size());
  Decoded d;
  d.images = torch::zeros({n, shape.channels, shape.height, shape.width}, torch::kUInt8);
  d.good = torch::ones({n}, torch::kBool);
  TextBar bar(log, "decoding " + dir.string());
  try {
    for (int64_t i = 0; i < n; ++i) {
      const fs::path& file = files[static_cast<size_t>(i)];
      bar.draw(static_cast<double>(i) / static_cast<double>(n),
               fmt::format("{} of {} images", i, n));
      try {
        const std::string bytes = read_bytes(file);
        const ImageInfo info = probe_image(bytes, file.string());
        const bool fits =
          info.channels == shape.channels || (info.grey_palette && shape.channels == 3);
        if (!fits) {  // never skipped: the folder is of two kinds
          const auto kind = [](int64_t c) { return c == 1 ? "grey" : "colour"; };
          throw std::invalid_argument(fmt::format(
              "image {} is {} but the folder's first image, {}, is {}: a data set's images must "
              "all be grey or all colour",
              file.string(), kind(info.channels), first.string(), kind(shape.channels)));
        }
        d.images[i].copy_(decode_image(bytes, file.string(), shape.channels, shape.height,
                                       shape.width));
      } catch (const InputError& e) {
        if (!options.skip_bad_images) throw;
        d.good[i].fill_(false);
        d.bad.push_back(e.what());
      } catch (const std::invalid_argument& e) {
        throw InputError(e.what());
      }
    }
  } catch (...) {
    bar.end_line();  // the message goes on a line of its own
    throw;
  }
  bar.draw(1.0, fmt::format("{} of {} images", n, n), /*last=*/true);
  return d;
}

// The labelled rows that decoded, in a fixed shuffled order, the first `limit` of them.
Dataset assemble(std::vector<Labelled> rows, const Decoded& d, uint64_t seed, int64_t limit) {
  shuffle_fixed(rows, seed);
  std::vector<int64_t> index, labels;
  const auto good = d.good.accessor<bool, 1>();
  for (const auto& r : rows) {
    if (!good[static_cast<int64_t>(r.file)]) continue;
    index.push_back(static_cast<int64_t>(r.file));
    labels.push_back(r.label);
    if (limit > 0 && static_cast<int64_t>(index.size()) == limit) break;
  }
  return {d.images.index_select(0, torch::tensor(index, torch::kInt64)),
          torch::tensor(labels, torch::kInt64)};
}

// Which of the two layouts dir has: true for DIR/train and DIR/test, false for class folders
// with --val-split; throws when it has neither, a half of the first, or the wrong options.
bool has_split_folders(const fs::path& dir, const FolderOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw InputError(fmt::format("--data-dir {} is not a folder (expected a folder of class "
                                 "folders of images)",
                                 dir.string()));
  }
  const bool has_train = fs::is_directory(dir / "train", ec);
  const bool has_test = fs::is_directory(dir / "test", ec);
  if (has_train != has_test) {
    throw InputError(fmt::format("{} has {}/ but no {}/: give both, or only class folders and "
                                 "--val-split",
                                 dir.string(), has_train ? "train" : "test",
                                 has_train ? "test" : "train"));
  }
  if (has_train && options.val_split > 0) {
    throw InputError(fmt::format("--val-split is for a folder of class folders, but {} has "
                                 "train/ and test/",
                                 dir.string()));
  }
  if (!has_train && options.val_split <= 0) {
    throw InputError(fmt::format("{} has no train/ and test/ folders: give --val-split F to hold "
                                 "out that fraction of each class for testing",
                                 dir.string()));
  }
  return has_train;
}

std::string skipped_note(const Decoded& d) {
  return d.bad.empty() ? std::string()
                       : fmt::format(" ({} undecodable files skipped)", d.bad.size());
}

// The images from the cache when it matches them, else from decode(); log says which.
Decoded read_or_decode(const fs::path& dir, const fs::path& cache, const std::string& key,
                       const std::function<Decoded()>& decode, CacheState& cached,
                       std::ostream& log) {
  Decoded decoded;
  cached = read_cache(cache, key, decoded);
  if (cached == CacheState::kDamaged) {
    log << fmt::format("warning: the image cache {} is damaged (truncated, or its contents do "
                       "not match their checksum): decoding the images again\n",
                       cache.string());
  }
  if (cached == CacheState::kRead) {
    log << fmt::format("{} images of {} from the cache {}{}\n", good_count(decoded), dir.string(),
                       cache.string(), skipped_note(decoded));
    return decoded;
  }
  const auto start = std::chrono::steady_clock::now();
  decoded = decode();
  log << fmt::format(
      "decoded {} images in {:.1f} s{}\n", good_count(decoded),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
      skipped_note(decoded));
  return decoded;
}

// A class is never empty: not when its folder has no image files, nor when none decodes.
void check_every_class_decodes(const Listing& listing, const Decoded& decoded) {
  const auto good = decoded.good.accessor<bool, 1>();
  for (const auto& span : listing.folders) {
    int64_t usable = 0;
    for (size_t i = span.begin; i < span.end; ++i) usable += good[static_cast<int64_t>(i)];
    if (usable == 0) {
      throw InputError(fmt::format("class folder {}: none of its {} image files can be decoded "
                                   "(--skip-bad-images skips bad files, but a class needs at "
                                   "least one image)",
                                   span.folder.string(), span.end - span.begin));
    }
  }
}

}  // namespace

DataSplit load_image_folder(const fs::path& dir, const FolderOptions& options, std::ostream& log) {
  const Listing listing = has_split_folders(dir, options) ? list_split_folders(dir)
                                                          : list_held_out(dir, options.val_split);
  const auto [shape, first] = first_image(dir, listing.files, options);
  if (options.check_shape) {  // before the images are decoded: the model can take them
    options.check_shape(shape.channels, shape.height, shape.width,
                        static_cast<int64_t>(listing.class_names.size()));
  }
  const fs::path cache =
      dir / fmt::format(".mgpu-cache-{}x{}x{}.pt", shape.height, shape.width, shape.channels);
  const std::string key = cache_key(dir, listing.files, shape, options.skip_bad_images);
  CacheState cached = CacheState::kMissing;
  const auto decode = [&, &shape = shape, &first = first] {
    return decode_all(dir, listing.files, shape, first, options, log);
  };
  const Decoded decoded = read_or_decode(dir, cache, key, decode, cached, log);
  if (!decoded.bad.empty()) {
    log << fmt::format("warning: skipped {} image files that cannot be decoded (--skip-bad-images), "
                       "the first: {}\n",
                       decoded.bad.size(), decoded.bad.front());
  }
  check_every_class_decodes(listing, decoded);

  DataSplit split;
  split.name = "folder";
  split.source = dir.string();
  split.class_names = listing.class_names;
  split.train = assemble(listing.train, decoded, kFolderSeed, options.limit_train);
  split.test = assemble(listing.test, decoded, kFolderSeed + 1, options.limit_test);
  if (split.train.size() == 0 || split.test.size() == 0) {
    throw InputError(fmt::format("{}: no {} image could be decoded", dir.string(),
                                 split.train.size() == 0 ? "training" : "test"));
  }
  // Written only now: a folder that fails writes no cache.
  if (cached != CacheState::kRead) write_cache(cache, key, decoded, log);
  return split;
}

}  // namespace mgpu::data
