// Reading a whole input file (data/ReadFile.h).
#include "data/ReadFile.h"

#include <fmt/core.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "data/InputError.h"

namespace mgpu::data {

namespace fs = std::filesystem;

std::string read_file(const fs::path& file, const std::string& what) {
  std::error_code ec;
  const auto status = fs::status(file, ec);
  if (!fs::exists(status)) {
    throw InputError(fmt::format("cannot open {} {}: no such file", what, file.string()));
  }
  if (!fs::is_regular_file(status)) {
    throw InputError(fmt::format("{} {}: expected a file, found {}", what, file.string(),
                                 fs::is_directory(status) ? "a directory" : "no regular file"));
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw InputError(
        fmt::format("cannot open {} {}: {}", what, file.string(), std::strerror(errno)));
  }
  std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw InputError(fmt::format("{} {}: cannot read it", what, file.string()));
  return bytes;
}

}  // namespace mgpu::data
