// IDX files (the MNIST / Fashion-MNIST format), plain or gzipped, and Fashion-MNIST itself.
#pragma once

#include <filesystem>
#include <vector>

#include "data/Dataset.h"

namespace mgpu::data {

/// Reads an unsigned-byte IDX file (magic 0x0000080N) with the expected number of dimensions;
/// gzip is detected from the content. Returns a uint8 tensor of the stored shape. Throws
/// InputError naming the file on a bad magic, dimension count, size or trailing bytes.
torch::Tensor read_idx(const std::filesystem::path& file, int64_t expected_dims);

/// True when dir holds the four Fashion-MNIST files (each plain or .gz).
bool has_fashion_mnist(const std::filesystem::path& dir);

/// train-{images,labels} and t10k-{images,labels} from dir; images become [N, 1, 28, 28].
DataSplit load_fashion_mnist(const std::filesystem::path& dir, int64_t limit_train,
                             int64_t limit_test);

}  // namespace mgpu::data
