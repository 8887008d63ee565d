// load_image_folder: list the classes and files, split, decode (or read the cache), assemble.
#include "data/ImageFolder.h"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <iterator>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "data/Image.h"       // defines: probe_image, decode_image
#include "data/InputError.h"  // defines: InputError
#include "data/TextBar.h"     // defines: TextBar
#include "data/ReadFile.h"  // defines: read_file

namespace mgpu::data {
namespace fs = std::filesystem;

namespace {

// The split and the order of the images do not depend on --seed: runs with other seeds train
// and test on the same images.
constexpr uint64_t kFolderSeed = 2017;
constexpr const char* kCacheFormat = "mgpu image cache 2";

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

// What the cache must match: the size, the colour, and every file's name, size and time.
std::string cache_key(const fs::path& dir, const std::vector<fs::path>& files,
                      const ImageInfo& shape, bool skip_bad) {
  std::string key = fmt::format("{}\n{}x{}x{} skip-bad {}\n", kCacheFormat, shape.height,
                                shape.width, shape.channels, skip_bad);
  for (const auto& f : files) {
    std::error_code ec;
    const auto size = fs::file_size(f, ec);
    const auto time = fs::last_write_time(f, ec).time_since_epoch().count();
    key += fmt::format("{}\t{}\t{}\n", fs::relative(f, dir, ec).string(), size, time);
  }
  return key;
}

struct Decoded {
  torch::Tensor images;          // [files, C, H, W] uint8; a bad file's row is zeros
  torch::Tensor good;            // [files] bool
  std::vector<std::string> bad;  // why each bad file was refused
};

int64_t good_count(const Decoded& d) { return d.good.sum().item<int64_t>(); }

// CRC32 of what the cache holds: LibTorch's archive reader does not notice changed bytes
// inside a tensor, so a damaged cache would train on them.
int64_t content_checksum(const Decoded& d) {
  uLong crc = crc32(0L, Z_NULL, 0);
  auto add = [&](const void* data, size_t size) {
    for (size_t at = 0; at < size; at += 1u << 30) {  // crc32 takes a uInt length
      const auto len = static_cast<uInt>(std::min<size_t>(1u << 30, size - at));
      crc = crc32(crc, static_cast<const Bytef*>(data) + at, len);
    }
  };
  const auto images = d.images.contiguous();
  const auto good = d.good.contiguous();
  add(images.data_ptr(), static_cast<size_t>(images.nbytes()));
  add(good.data_ptr(), static_cast<size_t>(good.nbytes()));
  for (const auto& message : d.bad) add(message.data(), message.size() + 1);  // with its '\0'
  return static_cast<int64_t>(crc);
}

enum class CacheState { kMissing, kStale, kDamaged, kRead };

CacheState read_cache(const fs::path& cache, const std::string& key, Decoded& out) {
  std::error_code ec;
  if (!fs::exists(cache, ec)) return CacheState::kMissing;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(cache.string());
    c10::IValue stored, bad;
    archive.read("key", stored);
    if (!stored.isString() || stored.toStringRef() != key) return CacheState::kStale;
    torch::Tensor checksum;
    archive.read("images", out.images);
    archive.read("good", out.good);
    archive.read("bad", bad);
    archive.read("checksum", checksum);
    out.bad.clear();
    for (const auto& message : bad.toListRef()) out.bad.push_back(message.toStringRef());
    const auto n = static_cast<int64_t>(std::count(key.begin(), key.end(), '\n')) - 2;
    const bool shaped = out.images.dim() == 4 && out.images.size(0) == n &&
                        out.images.scalar_type() == torch::kUInt8 && out.good.dim() == 1 &&
                        out.good.size(0) == n && out.good.scalar_type() == torch::kBool;
    if (!shaped || checksum.item<int64_t>() != content_checksum(out)) return CacheState::kDamaged;
    return CacheState::kRead;
  } catch (const c10::Error&) {
    return CacheState::kDamaged;  // truncated, or not an archive
  }
}

// The other image caches of dir (other sizes or colours): only the newest is kept.
std::vector<fs::path> other_caches(const fs::path& dir, const fs::path& keep) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const bool cache_name = name.rfind(".mgpu-cache-", 0) == 0 && name.size() > 15 &&
                            name.compare(name.size() - 3, 3, ".pt") == 0 &&
                            name.find(".part") == std::string::npos;
    if (cache_name && entry.path().filename() != keep.filename()) found.push_back(entry.path());
  }
  return found;
}

void write_cache(const fs::path& cache, const std::string& key, const Decoded& d,
                 std::ostream& log) {
  const fs::path part = cache.string() + fmt::format(".{}.part", ::getpid());
  try {
    torch::serialize::OutputArchive archive;
    archive.write("key", c10::IValue(key));
    archive.write("images", d.images);
    archive.write("good", d.good);
    c10::List<std::string> bad;
    for (const auto& message : d.bad) bad.push_back(message);
    archive.write("bad", c10::IValue(bad));
    archive.write("checksum", torch::tensor(content_checksum(d), torch::kInt64));
    archive.save_to(part.string());
    fs::rename(part, cache);
    for (const auto& old : other_caches(cache.parent_path(), cache)) {
      std::error_code ec;
      if (fs::remove(old, ec)) {
        log << fmt::format("removed the older image cache {} (a folder keeps one cache, for the "
                           "image size last used)\n",
                           old.string());
      }
    }
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(part, ec);
    log << fmt::format("warning: cannot write the image cache {} ({}); the images will be "
                       "decoded again next time\n",
                       cache.string(), e.what());
  }
}

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

}  // namespace

DataSplit load_image_folder(const fs::path& dir, const FolderOptions& options, std::ostream& log) {
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
  const Listing listing = has_train ? list_split_folders(dir) : list_held_out(dir, options.val_split);
  const auto [shape, first] = first_image(dir, listing.files, options);
  if (options.check_shape) {  // before the images are decoded: the model can take them
    options.check_shape(shape.channels, shape.height, shape.width,
                        static_cast<int64_t>(listing.class_names.size()));
  }
  const fs::path cache =
      dir / fmt::format(".mgpu-cache-{}x{}x{}.pt", shape.height, shape.width, shape.channels);
  const std::string key = cache_key(dir, listing.files, shape, options.skip_bad_images);
  Decoded decoded;
  const CacheState cached = read_cache(cache, key, decoded);
  if (cached == CacheState::kDamaged) {
    log << fmt::format("warning: the image cache {} is damaged (truncated, or its contents do "
                       "not match their checksum): decoding the images again\n",
                       cache.string());
  }
  const auto skipped = [](const Decoded& d) {
    return d.bad.empty() ? std::string()
                         : fmt::format(" ({} undecodable files skipped)", d.bad.size());
  };
  if (cached == CacheState::kRead) {
    log << fmt::format("{} images of {} from the cache {}{}\n", good_count(decoded), dir.string(),
                       cache.string(), skipped(decoded));
  } else {
    const auto start = std::chrono::steady_clock::now();
    decoded = decode_all(dir, listing.files, shape, first, options, log);
    log << fmt::format("decoded {} images in {:.1f} s{}\n", good_count(decoded),
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                           .count(),
                       skipped(decoded));
  }
  if (!decoded.bad.empty()) {
    log << fmt::format("warning: skipped {} image files that cannot be decoded (--skip-bad-images), "
                       "the first: {}\n",
                       decoded.bad.size(), decoded.bad.front());
  }
  // A class is never empty: not when its folder has no image files, nor when none decodes.
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
