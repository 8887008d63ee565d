// The readers under fuzzing take a path: each input goes to a file of this process's own.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace mgpu::fuzz {

/// Writes data to /tmp/mgpu-fuzz-<name>-<pid> (the same file for every input) and returns
/// that path.
inline std::string input_file(const char* name, const uint8_t* data, size_t size) {
  const std::string path = std::string("/tmp/mgpu-fuzz-") + name + "-" + std::to_string(::getpid());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace mgpu::fuzz
