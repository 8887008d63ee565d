// The decoded images of an image folder and their cache beside the images
// (DIR/.mgpu-cache-HxWxC.pt): what it must match, reading it back, writing it atomically.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "data/Image.h"  // defines: ImageInfo

namespace mgpu::data {

/// A folder's files decoded to one size and colour, in the listing's order.
struct Decoded {
  torch::Tensor images;          // [files, C, H, W] uint8; a bad file's row is zeros
  torch::Tensor good;            // [files] bool
  std::vector<std::string> bad;  // why each bad file was refused
};

int64_t good_count(const Decoded& d);

/// What a cache must match: the size, the colour, and every file's name, size and time.
std::string cache_key(const std::filesystem::path& dir,
                      const std::vector<std::filesystem::path>& files, const ImageInfo& shape,
                      bool skip_bad);

enum class CacheState { kMissing, kStale, kDamaged, kRead };

/// Reads the cache into out when its key is `key` and its contents match their checksum.
CacheState read_cache(const std::filesystem::path& cache, const std::string& key, Decoded& out);

/// Writes the cache atomically (a .part file renamed into place) and removes the folder's
/// caches of other sizes; a failure is a warning on log, never an error.
void write_cache(const std::filesystem::path& cache, const std::string& key, const Decoded& d,
                 std::ostream& log);

}  // namespace mgpu::data
