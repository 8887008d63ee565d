// Image files (PNG, JPEG, BMP, GIF, ...) decoded by stb_image (Debian's libstb-dev) and
// resized to a model's input.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>

namespace mgpu::data {

/// Decodes file, converts it to `channels` channels (1: grey, 3: RGB, alpha dropped) and
/// resizes it to height x width if it is another size. Returns uint8 [channels, height, width].
/// Throws InputError naming the file for a missing, unreadable or undecodable one, or one of
/// over 100 million pixels.
torch::Tensor load_image(const std::filesystem::path& file, int64_t channels, int64_t height,
                         int64_t width);

/// An image file's size and colour, read from its header (a GIF's colour from its pixels).
struct ImageInfo {
  int64_t height = 0, width = 0;
  int64_t channels = 0;  // 1: grey (with or without alpha), 3: colour (alpha dropped)
  /// A GIF whose colours are all grey: channels is 1, and it fits a colour data set as well
  /// (GIF has no grey mode, so a grey picture is stored as a palette of greys).
  bool grey_palette = false;
};

/// The size and colour of the image in bytes; throws InputError naming source if stb cannot
/// read its header (an empty, truncated or unknown file). The header says grey or colour,
/// except a GIF's (always a colour palette): a GIF is decoded and called grey when every pixel
/// is.
ImageInfo probe_image(const std::string& bytes, const std::string& source);

/// load_image on the bytes of a file already read; source names it in messages.
torch::Tensor decode_image(const std::string& bytes, const std::string& source, int64_t channels,
                           int64_t height, int64_t width);

}  // namespace mgpu::data
