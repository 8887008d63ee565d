// Atomic, durable writes (temporary file, fsync, rename, fsync of the directory) and the
// check that an output directory is writable before a run depends on it.
#include "train/files/AtomicFile.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <atomic>
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
    // A name of this process's (and call's) own: runs starting together do not trip each other.
    static std::atomic<int> calls{0};
    const fs::path probe = dir / fmt::format(".mgpu-write-test-{}-{}", ::getpid(), calls++);
    write_text_atomically(probe, "ok\n");
    fs::remove(probe, ec);
  } catch (const std::exception&) {
    throw data::InputError(fmt::format("{} {}: the directory is not writable", flag, dir.string()));
  }
}

void check_output_file(const fs::path& path, const std::string& flag,
                       const std::string& example) {
  std::error_code ec;
  if (path.filename().empty() || fs::is_directory(path, ec)) {
    throw data::InputError(fmt::format("{} {}: expected a file name such as {}{}", flag,
                                       path.string(), example,
                                       fs::is_directory(path, ec) ? " (that is a directory)" : ""));
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

namespace {

// No regular file (or anything but directories) anywhere under dir.
bool holds_no_file(const fs::path& dir) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory(ec)) return false;
  }
  return !ec;
}

}  // namespace

void NewDirectories::prepare(const fs::path& dir, const std::string& flag) {
  // The outermost directory of dir that does not exist yet is what this creates.
  fs::path outermost, p = fs::absolute(dir).lexically_normal();
  std::error_code ec;
  for (; !p.empty() && !fs::exists(p, ec) && p != p.parent_path(); p = p.parent_path()) {
    outermost = p;
  }
  prepare_output_dir(dir, flag);
  if (!outermost.empty()) created_.push_back(outermost);
}

fs::path NewDirectories::prepare_new(const fs::path& base, const std::string& flag) {
  if (base.has_parent_path()) prepare(base.parent_path(), flag);
  for (int k = 1;; ++k) {
    const fs::path dir = k == 1 ? base : fs::path(fmt::format("{}-{}", base.string(), k));
    std::error_code ec;
    if (fs::create_directory(dir, ec)) {  // false if it exists: another run has that name
      created_.push_back(fs::absolute(dir).lexically_normal());
      prepare_output_dir(dir, flag);
      return dir;
    }
    if (ec) {
      throw data::InputError(fmt::format("{} {}: cannot create the directory ({})", flag,
                                         dir.string(), ec.message()));
    }
  }
}

NewDirectories::~NewDirectories() {
  if (std::uncaught_exceptions() <= exceptions_) return;
  for (const auto& dir : created_) {
    std::error_code ec;
    if (holds_no_file(dir)) fs::remove_all(dir, ec);
  }
}

}  // namespace mgpu::train
