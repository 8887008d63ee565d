// History CSV writing and parsing; atomic writes.
#include "train/History.h"

#include <fmt/core.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "data/InputError.h"

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {

constexpr const char* kHeader = "epoch,lr,seconds,loss,acc,val_loss,val_acc";

// Flushes a file (or a directory's entries) to the disk; throws naming it.
void sync_to_disk(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    throw std::runtime_error(fmt::format("cannot flush {} to disk: {}", path.string(), std::strerror(err)));
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
    if (ec) throw std::runtime_error(fmt::format("cannot rename {} to {}: {}", tmp.string(),
                                                 path.string(), ec.message()));
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
      throw std::runtime_error(fmt::format("cannot write {}: {}", tmp.string(), std::strerror(errno)));
    }
  });
}

std::string history_csv(const History& history) {
  std::string csv = std::string(kHeader) + "\n";
  for (const auto& e : history) {
    csv += fmt::format("{},{:.8g},{:.3f},{:.6f},{:.6f},{:.6f},{:.6f}\n", e.epoch, e.lr, e.seconds,
                       e.loss, e.acc, e.val_loss, e.val_acc);
  }
  return csv;
}

History parse_history_csv(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kHeader) {
    throw data::InputError(
        fmt::format("{}: first line is not the header '{}'", source, kHeader));
  }
  History history;
  for (int line_no = 2; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    EpochStats e;
    char c[6];
    fields >> e.epoch >> c[0] >> e.lr >> c[1] >> e.seconds >> c[2] >> e.loss >> c[3] >> e.acc >>
        c[4] >> e.val_loss >> c[5] >> e.val_acc;
    bool commas = true;
    for (char ch : c) commas = commas && ch == ',';
    if (!fields || !commas || !(fields >> std::ws).eof()) {
      throw data::InputError(fmt::format("{}:{}: expected 7 comma-separated numbers, got '{}'",
                                         source, line_no, line));
    }
    history.push_back(e);
  }
  return history;
}

History read_history_csv(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw data::InputError(fmt::format("cannot open history file {}", file.string()));
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  History history = parse_history_csv(text, file.string());
  if (history.empty()) throw data::InputError(fmt::format("{} holds no epochs", file.string()));
  return history;
}

}  // namespace mgpu::train
