// The image folder's cache: its key, its checksum, reading and writing it (data/ImageCache.h).
#include "data/ImageCache.h"

#include <fmt/core.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>

namespace mgpu::data {
namespace fs = std::filesystem;

namespace {

constexpr const char* kCacheFormat = "mgpu image cache 2";

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

}  // namespace

int64_t good_count(const Decoded& d) { return d.good.sum().item<int64_t>(); }

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

}  // namespace mgpu::data
