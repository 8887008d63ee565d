// libFuzzer target: read_idx on arbitrary bytes (plain or gzip-looking). Any input must end in
// a tensor or an InputError; a crash, a hang or a sanitizer report is a finding.
#include <cstdint>
#include <string>

#include "FuzzInput.h"
#include "data/Idx.h"
#include "data/InputError.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mgpu::fuzz::input_file("idx", data, size);
  for (int64_t dims : {1, 3}) {
    try {
      mgpu::data::read_idx(path, dims);
    } catch (const mgpu::data::InputError&) {
      // the expected way to refuse bad bytes
    }
  }
  return 0;
}
