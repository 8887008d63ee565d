// libFuzzer target: read_cifar10_file on arbitrary bytes. Any input must end in a data set or
// an InputError; a crash, a hang or a sanitizer report is a finding.
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "data/Cifar10.h"
#include "data/InputError.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/mgpu-fuzz-cifar10-" + std::to_string(::getpid());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  for (int64_t max_records : {0, 1}) {
    try {
      mgpu::data::read_cifar10_file(path, max_records);
    } catch (const mgpu::data::InputError&) {
      // the expected way to refuse bad bytes
    }
  }
  return 0;
}
