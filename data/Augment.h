// Batched augmentation as in the tutorial's Keras ImageDataGenerator: random shifts of up to
// 10% of width and height with nearest-edge fill, then random horizontal flips.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace mgpu::data {

/// How a shift fills the border it uncovers: with the edge pixels repeated (Keras's "nearest"),
/// or mirrored without repeating the edge (PyTorch's "reflect" padding; |shift| < side).
enum class Fill { kNearest, kReflect };

/// Shifts image b of batch [B, C, H, W] right by dx[b] and down by dy[b] whole pixels (int64
/// [B], negative: left/up), filling the uncovered border as fill says, then mirrors it
/// left-right where flip[b] (bool [B]). Pure tensor gathers, on the batch's device. With
/// kReflect it is airbench's random crop of the image reflect-padded by |shift| pixels.
torch::Tensor shift_and_flip(const torch::Tensor& batch, const torch::Tensor& dx,
                             const torch::Tensor& dy, const torch::Tensor& flip,
                             Fill fill = Fill::kNearest);

/// --flip alternating (airbench's): image i of the set is mirrored in even epochs where one draw
/// made for the whole run (from seed) says so, and in odd epochs where it does not. order: the
/// epoch's image indices (int64); returns bool [order.numel()].
torch::Tensor alternating_flips(uint64_t seed, int64_t images, const torch::Tensor& order,
                                int64_t epoch);

/// --translate N (airbench's crop): n whole-pixel shifts, each uniform in [-N, N] (int64).
torch::Tensor uniform_shifts(int64_t n, int64_t range, torch::Generator& generator);

struct AugmentOptions {
  double width_shift = 0.1;   // fraction of the width
  double height_shift = 0.1;  // fraction of the height
  bool horizontal_flip = true;
};

/// Random offsets drawn like Keras (uniform in +-shift * size, here rounded to whole pixels),
/// flips with probability 1/2; reproducible from its seed.
class Augmenter {
 public:
  Augmenter(AugmentOptions options, uint64_t seed);

  /// [B, C, H, W] float -> augmented copy on the same device.
  torch::Tensor operator()(const torch::Tensor& batch);

  /// The offsets for a batch: dx, dy (int64 [B]) and flip (bool [B]), on the CPU.
  struct Draw {
    torch::Tensor dx, dy, flip;
  };
  Draw draw(int64_t batch, int64_t height, int64_t width);
  /// The same from any CPU generator (the trainer draws a whole epoch at once).
  static Draw draw(const AugmentOptions& options, torch::Generator& generator, int64_t batch,
                   int64_t height, int64_t width);

 private:
  AugmentOptions options_;
  torch::Generator generator_;  // CPU: a few numbers per batch, the same on any device
};

}  // namespace mgpu::data
