// airbench's test-time augmentation (its infer_mirror and infer_mirror_translate), for any model.
#include "train/Tta.h"

#include <fmt/core.h>

#include "data/InputError.h"  // defines: InputError

namespace mgpu::train {

Tta parse_tta(const std::string& text, const std::string& flag) {
  if (text == "none") return Tta::kNone;
  if (text == "mirror") return Tta::kMirror;
  if (text == "mirror-translate") return Tta::kMirrorTranslate;
  throw data::InputError(
      fmt::format("{} '{}': expected none, mirror or mirror-translate", flag, text));
}

std::string tta_name(Tta tta) {
  switch (tta) {
    case Tta::kNone:
      return "none";
    case Tta::kMirror:
      return "mirror";
    case Tta::kMirrorTranslate:
      return "mirror-translate";
  }
  return "none";
}

torch::Tensor tta_logits(const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                         const torch::Tensor& x, Tta tta) {
  const auto f = [&](const torch::Tensor& view) { return forward(view).to(torch::kFloat); };
  if (tta == Tta::kNone) return f(x);
  const auto mirror = [&](const torch::Tensor& view) {
    return 0.5 * f(view) + 0.5 * f(view.flip({-1}));
  };
  const auto logits = mirror(x);
  if (tta == Tta::kMirror) return logits;
  const int64_t h = x.size(2), w = x.size(3);
  const auto padded = torch::nn::functional::pad(
      x, torch::nn::functional::PadFuncOptions({1, 1, 1, 1}).mode(torch::kReflect));
  const auto up_left = padded.narrow(2, 0, h).narrow(3, 0, w);
  const auto down_right = padded.narrow(2, 2, h).narrow(3, 2, w);
  const auto translated = torch::stack({mirror(up_left), mirror(down_right)}).mean(0);
  return 0.5 * logits + 0.5 * translated;
}

}  // namespace mgpu::train
