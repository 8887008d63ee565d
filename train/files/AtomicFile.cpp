// Atomic, durable writes (temporary file, fsync, rename, fsync of the directory) and the
// check that an output directory is writable before a run depends on it.
#include "train/files/AtomicFile.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "data/InputError.h"

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {

// Flushes a file (or a directory's entries) to the disk; throws naming it.
void sync_to_disk(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    throw std::runtime_error(
        fmt::format("cannot flush {} to disk: {}", path.string(), std::strerror(err)));
  }
  ::close(fd);
}

}  // namespace

void write_atomically(const fs::path& path, const std::function<void(const fs::path&)>& write) {
  fs::path tmp = path;
  tmp += ".tmp";
  try {
    write(tmp);
    sync_to_disk(tmp, O_RDONLY);  // the data is on disk before the name points at it
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec)
      throw std::runtime_error(
          fmt::format("cannot rename {} to {}: {}", tmp.string(), path.string(), ec.message()));
    const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
    sync_to_disk(dir, O_RDONLY | O_DIRECTORY);  // and the rename survives a crash
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

void prepare_output_dir(const fs::path& dir, const std::string& flag) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw data::InputError(fmt::format("{} {}: cannot create the directory ({})", flag,
                                       dir.string(),
                                       ec ? ec.message() : "a file of that name exists"));
  }
  try {
    write_text_atomically(dir / ".mgpu-write-test", "ok\n");
    fs::remove(dir / ".mgpu-write-test", ec);
  } catch (const std::exception&) {
    throw data::InputError(fmt::format("{} {}: the directory is not writable", flag, dir.string()));
  }
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  write_atomically(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      throw std::runtime_error(
          fmt::format("cannot write {}: {}", tmp.string(), std::strerror(errno)));
    }
  });
}

}  // namespace mgpu::train
