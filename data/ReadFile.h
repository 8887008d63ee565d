// Reading a whole input file, every failure an InputError that names the file and what it was
// meant to be (a directory or a FIFO given for a file included).
#pragma once

#include <filesystem>
#include <string>

namespace mgpu::data {

/// The bytes of file; `what` says what it should be ("image", "history file", ...). Throws
/// InputError naming both when the file is missing, not a regular file, or cannot be read.
std::string read_file(const std::filesystem::path& file, const std::string& what);

}  // namespace mgpu::data
