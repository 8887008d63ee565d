// mgpu evaluate: a trained model's test loss and accuracy, per-class accuracy and confusion
// matrix, printed and written as evaluation.json, confusion.csv and confusion.png.
#pragma once

#include <torch/torch.h>

#include <ostream>
#include <string>
#include <vector>

#include "data/Dataset.h"
#include "data/Datasets.h"
#include "train/Tta.h"  // defines: Tta

namespace mgpu::app {

struct EvaluateConfig {
  std::string weights;    // a weights file (a run's model.pt) or a run directory
  data::DataConfig data;  // dataset "auto": the one the weights were trained on
  int64_t gpus = 0;       // 0: the CPU; 1: the first CUDA GPU
  int64_t threads = 0;    // LibTorch intra-op threads; 0: all cores
  int64_t batch = 256;    // images per forward pass (no effect on results)
  std::string tta;  // test-time augmentation: none, mirror, mirror-translate; "": the run's
                    // (recorded in its weights file), else the model's recipe's, else none
  std::string amp;  // autocast: off, bf16, fp16; "": the run's, else off
  std::string out_dir;    // empty: the weights file's folder
};

struct Evaluation {
  int64_t images = 0;
  double loss = 0;          // mean cross-entropy per image
  double acc = 0;           // fraction correct
  torch::Tensor confusion;  // [K, K] int64 on the CPU: row = true class, column = predicted
  /// Fraction of class k's images predicted as k (NaN for a class with no images).
  std::vector<double> class_accuracy() const;
};

/// Runs model (eval mode, no gradients) over dataset in batches, subtracting mean [C, H, W],
/// its logits averaged over the views of tta (train/Tta.h), the forward passes autocast as amp
/// says (off, bf16, fp16) and in channels-last memory order if asked, as the training's
/// validation runs them. With progress, draws a bar of the images done there.
Evaluation evaluate_model(torch::nn::AnyModule& model, const torch::Tensor& mean,
                          const data::Dataset& dataset, int64_t classes, int64_t batch,
                          train::Tta tta = train::Tta::kNone, const std::string& amp = "off",
                          bool channels_last = false, std::ostream* progress = nullptr);

/// The confusion matrix as CSV: a header of predicted classes, one row per true class.
std::string confusion_csv(const Evaluation& e, const std::vector<std::string>& class_names);

/// The printed report: loss, accuracy, per-class accuracy and the confusion matrix.
std::string evaluation_report(const Evaluation& e, const std::vector<std::string>& class_names);

/// The whole command: loads weights and data, evaluates, prints, writes the three files.
void run_evaluate(const EvaluateConfig& config, std::ostream& out);

}  // namespace mgpu::app
