// How a global batch is split among replicas and micro-batches.
#pragma once

#include <cstdint>
#include <vector>

namespace mgpu::train {

struct Shard {
  int64_t offset = 0;  // first image of the shard within the global batch
  int64_t size = 0;
};

/// Splits `batch` images into `parts` contiguous shards as evenly as possible: the first
/// batch % parts shards get one image more. Together they cover the batch exactly once.
inline std::vector<Shard> shard_batch(int64_t batch, int64_t parts) {
  std::vector<Shard> shards;
  int64_t offset = 0;
  for (int64_t p = 0; p < parts; ++p) {
    const int64_t size = batch / parts + (p < batch % parts ? 1 : 0);
    shards.push_back({offset, size});
    offset += size;
  }
  return shards;
}

}  // namespace mgpu::train
