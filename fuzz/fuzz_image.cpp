// libFuzzer target: decode_image (stb_image and stb_image_resize, as mgpu predict uses them) on
// arbitrary bytes, for one- and three-channel models. Any input must end in an image tensor or
// an InputError; a crash, a hang or a sanitizer report is a finding.
#include <cstdint>
#include <string>

#include "data/Image.h"
#include "data/InputError.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  for (int64_t channels : {1, 3}) {
    try {
      mgpu::data::decode_image(bytes, "fuzz input", channels, 32, 32);
    } catch (const mgpu::data::InputError&) {
      // the expected way to refuse bad bytes
    }
  }
  return 0;
}
