// mgpu predict: the most likely classes of image files under a trained model.
#pragma once

#include <torch/torch.h>

#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "train/files/Weights.h"

namespace mgpu::app {

struct PredictConfig {
  std::string weights;              // a weights file (a run's model.pt) or a run directory
  std::vector<std::string> images;  // PNG, JPEG, ... of any size
  int64_t top = 3;                  // classes shown per image (at most the class count)
  int64_t gpus = 0;                 // 0: the CPU; 1: the first CUDA GPU
  int64_t threads = 0;              // LibTorch intra-op threads; 0: all cores
};

struct Prediction {
  std::string image;
  std::vector<std::pair<int64_t, double>> top;  // (class, probability), most likely first
};

/// Class probabilities [N, K] of uint8 images [N, C, H, W] of the model's input size: the
/// training mean subtracted, the model in eval mode, softmax of its logits.
torch::Tensor class_probabilities(train::Weights& w, const torch::Tensor& images);

/// Decodes and resizes each file (data/Image.h) and returns its top classes.
std::vector<Prediction> predict_files(train::Weights& w, const std::vector<std::string>& files,
                                      int64_t top);

/// The whole command: prints one line per image, "FILE: class p, class p, ...".
void run_predict(const PredictConfig& config, std::ostream& out);

}  // namespace mgpu::app
