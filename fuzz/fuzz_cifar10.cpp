// libFuzzer target: read_cifar10_file on arbitrary bytes. Any input must end in a data set or
// an InputError; a crash, a hang or a sanitizer report is a finding.
#include <cstdint>
#include <string>

#include "FuzzInput.h"
#include "data/Cifar10.h"
#include "data/InputError.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mgpu::fuzz::input_file("cifar10", data, size);
  for (int64_t max_records : {0, 1}) {
    try {
      mgpu::data::read_cifar10_file(path, max_records);
    } catch (const mgpu::data::InputError&) {
      // the expected way to refuse bad bytes
    }
  }
  return 0;
}
