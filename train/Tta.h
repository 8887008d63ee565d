// Test-time augmentation: a model's logits averaged over mirrored and translated views of each
// image, as airbench (Jordan, 2024, arXiv 2404.00498) evaluates, for any model.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>

namespace mgpu::train {

enum class Tta {
  kNone,             // the image as it is
  kMirror,           // the image and its mirror image, averaged
  kMirrorTranslate,  // that, averaged with the same for the image moved one pixel up-left and
                     // one pixel down-right (borders reflected)
};

/// "none", "mirror" or "mirror-translate"; throws data::InputError naming `flag` otherwise.
Tta parse_tta(const std::string& text, const std::string& flag = "--tta");
std::string tta_name(Tta tta);

/// The logits [B, classes] (float32) for the preprocessed images x [B, C, H, W], averaged over
/// the views of `tta` with airbench's weights and in its order of operations:
///   mirror(x) = 0.5 * f(x) + 0.5 * f(flip(x));
///   mirror-translate(x) = 0.5 * mirror(x) + 0.5 * mean(mirror(x[-1, -1]), mirror(x[+1, +1])),
/// where x[d, d] is x reflect-padded by one pixel and cut back to H x W shifted by d.
/// forward: the model's forward pass (in eval mode, autocast as the caller wants).
torch::Tensor tta_logits(const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                         const torch::Tensor& x, Tta tta);

}  // namespace mgpu::train
