// Dataset: images and labels held as tensors, and the pair of splits a run trains on.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace mgpu::data {

struct Dataset {
  torch::Tensor images;  // [N, C, H, W] uint8, raw pixels
  torch::Tensor labels;  // [N] int64, 0 .. classes-1

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  /// The first n records (all of them when n <= 0 or n >= size()).
  Dataset first(int64_t n) const;
};

struct DataSplit {
  std::string name;  // "cifar10" or "fashion-mnist"
  std::string source;  // the folder the files came from
  std::vector<std::string> class_names;
  Dataset train;
  Dataset test;
};

}  // namespace mgpu::data
