// load_image: stb_image decodes, stb_image_resize resamples.
#include "data/Image.h"

#include <fmt/core.h>
#include <stb_image.h>         // defines: stbi_load_from_memory (compiled in Stb.cpp)
#include <stb_image_resize.h>  // defines: stbir_resize_uint8

#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>

#include "data/InputError.h"  // defines: InputError
#include "data/ReadFile.h"  // defines: read_file

namespace mgpu::data {

namespace {
constexpr int64_t kMaxImagePixels = 100'000'000;  // a 10,000 x 10,000 photo

// Whether every pixel of the picture in bytes has red == green == blue.
bool all_pixels_grey(const std::string& bytes, const std::string& source) {
  int w = 0, h = 0, found = 0;
  stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                        static_cast<int>(bytes.size()), &w, &h, &found);
  const torch::Tensor rgb = decode_image(bytes, source, 3, h, w);  // [3, H, W]
  return torch::equal(rgb[0], rgb[1]) && torch::equal(rgb[1], rgb[2]);
}

}  // namespace

torch::Tensor load_image(const std::filesystem::path& file, int64_t channels, int64_t height,
                         int64_t width) {
  return decode_image(read_file(file, "image"), file.string(), channels, height, width);
}

ImageInfo probe_image(const std::string& bytes, const std::string& source) {
  int w = 0, h = 0, found = 0;
  if (bytes.empty()) throw InputError(fmt::format("image {} is empty (0 bytes)", source));
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                             static_cast<int>(bytes.size()), &w, &h, &found)) {
    throw InputError(fmt::format("image {} cannot be decoded: {} (expected PNG, JPEG, BMP, GIF, "
                                 "TGA, PSD, HDR, PIC or PNM)",
                                 source, stbi_failure_reason()));
  }
  ImageInfo info{h, w, found >= 3 ? 3 : 1};
  if (info.channels == 3 && bytes.compare(0, 4, "GIF8") == 0 && all_pixels_grey(bytes, source)) {
    info.channels = 1;
    info.grey_palette = true;
  }
  return info;
}

torch::Tensor decode_image(const std::string& bytes, const std::string& source, int64_t channels,
                           int64_t height, int64_t width) {
  if (channels < 1 || channels > 4 || height < 1 || width < 1) {
    throw InputError(fmt::format("cannot make {}x{}x{} images", channels, height, width));
  }
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw InputError(fmt::format("image {}: {} bytes is too large", source, bytes.size()));
  }
  int w = 0, h = 0, found = 0;
  const int c = static_cast<int>(channels);
  // A few bytes can claim a huge picture: refuse before stb allocates it.
  if (stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                            static_cast<int>(bytes.size()), &w, &h, &found) &&
      static_cast<int64_t>(w) * h > kMaxImagePixels) {
    throw InputError(fmt::format("image {} is {}x{} pixels: more than the {} million accepted",
                                 source, w, h, kMaxImagePixels / 1000000));
  }
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                            static_cast<int>(bytes.size()), &w, &h, &found, c),
      stbi_image_free);
  if (!pixels) {
    throw InputError(
        fmt::format("image {} cannot be decoded: {} (expected PNG, JPEG, BMP, GIF, "
                    "TGA, PSD, HDR, PIC or PNM)",
                    source, stbi_failure_reason()));
  }
  auto out = torch::empty({height, width, channels}, torch::kUInt8);  // stb's order: HWC
  if (w == width && h == height) {
    std::memcpy(out.data_ptr<uint8_t>(), pixels.get(), static_cast<size_t>(w) * h * c);
  } else if (!stbir_resize_uint8(pixels.get(), w, h, 0, out.data_ptr<uint8_t>(),
                                 static_cast<int>(width), static_cast<int>(height), 0, c)) {
    throw InputError(
        fmt::format("image {} ({}x{}) cannot be resized to {}x{}", source, w, h, width, height));
  }
  return out.permute({2, 0, 1}).contiguous();  // [C, H, W]
}

}  // namespace mgpu::data
