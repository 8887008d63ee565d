// The run's TensorBoard event files: opened fresh or trimmed to a resumed run's checkpoint,
// then appended a record at a time.
#include "train/report/TensorBoard.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <stdexcept>
#include <utility>
#include <vector>

#include "train/files/AtomicFile.h"   // defines: write_text_atomically
#include "train/report/EventFile.h"  // defines: Event, encode_event, frame_record, read_records

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_event_file(const fs::path& p) {
  return p.filename().string().find("tfevents") != std::string::npos;
}

// The folder's event files, oldest name first (TensorBoard reads them in that order).
std::vector<fs::path> event_files(const fs::path& folder) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.is_regular_file() && is_event_file(entry.path())) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The earlier parts' events that this part does not train again: epochs up to the
// checkpoint's, steps up to its step; each (tag, step) once, the newest file's where several
// have it (each part's file repeats the kept events of the parts before). Events that are not
// mgpu's scalars or texts (the version, session starts, another writer's) are left out.
std::vector<std::string> kept_events(const std::vector<fs::path>& files, const LogPosition& at) {
  std::vector<std::string> kept;
  std::map<std::pair<std::string, int64_t>, size_t> where;  // (tag, step) -> index in kept
  for (const auto& file : files) {
    for (const auto& record : read_records(file)) {
      Event e;
      try {
        e = decode_event(record);
      } catch (const std::runtime_error&) {
        continue;
      }
      if (e.tag.empty()) continue;
      // A text (the settings) at the position itself is the part's that resumed there before.
      const bool per_epoch = e.tag.rfind("epoch_", 0) == 0;
      if (e.step > (per_epoch ? at.epochs : at.steps) || (e.is_text && e.step == at.steps)) {
        continue;
      }
      const auto [it, added] = where.insert({{e.tag, e.step}, kept.size()});
      if (added) {
        kept.push_back(record);
      } else {
        kept[it->second] = record;
      }
    }
  }
  return kept;
}

std::string hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "host";
  return name;
}

}  // namespace

TensorBoardLog::Writer::Writer(const fs::path& folder, std::optional<LogPosition> resumed) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("cannot create the TensorBoard folder {}: {}", folder.string(), ec.message()));
  }
  const auto old = event_files(folder);
  std::string content;
  Event version;
  version.wall_time = now_seconds();
  version.file_version = "brain.Event:2";
  content += frame_record(encode_event(version));
  // A TensorBoard that read the folder's earlier files drops what it holds and reads this one
  // from the start (event_accumulator purges from the start's step, 0, on).
  Event start;
  start.wall_time = version.wall_time;
  start.session_start = true;
  content += frame_record(encode_event(start));
  if (resumed) {
    for (const auto& record : kept_events(old, *resumed)) content += frame_record(record);
  }
  // TensorBoard's name, in the order of the parts, made unique by the pid and a count:
  // events.out.tfevents.<seconds>.<host>.<pid>.<n>.mgpu
  static std::atomic<int> opened{0};
  file_ = folder / fmt::format("events.out.tfevents.{}.{}.{}.{:04}.mgpu",
                               static_cast<int64_t>(version.wall_time), hostname(), getpid(),
                               opened++);
  // Complete before TensorBoard can see it: written under a name without "tfevents", then
  // renamed. A fresh run removes an earlier run's files; a resumed one keeps its earlier parts'
  // (TensorBoard's reader would stay on a file removed under it), and the session start at the
  // head of the new file makes TensorBoard drop what it read of them and take the kept events
  // from this one.
  const fs::path fresh = folder / "mgpu-events.new";
  write_text_atomically(fresh, content);
  fs::rename(fresh, file_);
  if (!resumed) {
    for (const auto& f : old) {
      if (f != file_) fs::remove(f, ec);
    }
  }
  fd_ = ::open(file_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) {
    throw std::runtime_error(
        fmt::format("cannot open the event file {}: {}", file_.string(), std::strerror(errno)));
  }
}

TensorBoardLog::Writer::~Writer() {
  if (fd_ >= 0) ::close(fd_);
}

void TensorBoardLog::Writer::append(const std::string& event) {
  const std::string record = frame_record(event);
  size_t done = 0;
  while (done < record.size()) {
    const ssize_t n = ::write(fd_, record.data() + done, record.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      throw std::runtime_error(
          fmt::format("cannot write the event file {}: {}", file_.string(), std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
}

void TensorBoardLog::Writer::scalar(const std::string& tag, double value, int64_t step) {
  Event e;
  e.wall_time = now_seconds();
  e.step = step;
  e.tag = tag;
  e.value = value;
  append(encode_event(e));
}

void TensorBoardLog::Writer::text(const std::string& tag, const std::string& markdown,
                                  int64_t step) {
  Event e;
  e.wall_time = now_seconds();
  e.step = step;
  e.tag = tag;
  e.text = markdown;
  e.is_text = true;
  append(encode_event(e));
}

TensorBoardLog::TensorBoardLog(const fs::path& dir, std::optional<LogPosition> resumed)
    : dir_(dir), train_(dir / "train", resumed), validation_(dir / "validation", resumed) {}

void TensorBoardLog::text(const std::string& tag, const std::string& markdown, int64_t step) {
  train_.text(tag, markdown, step);
}

void TensorBoardLog::epoch(const EpochStats& s, double images_per_second) {
  train_.scalar("epoch_loss", s.loss, s.epoch);
  train_.scalar("epoch_acc", s.acc, s.epoch);
  train_.scalar("epoch_lr", s.lr, s.epoch);
  train_.scalar("epoch_seconds", s.seconds, s.epoch);
  train_.scalar("epoch_images_per_second", images_per_second, s.epoch);
  validation_.scalar("epoch_loss", s.val_loss, s.epoch);
  validation_.scalar("epoch_acc", s.val_acc, s.epoch);
}

void TensorBoardLog::step(int64_t step, double loss, double lr, double loss_scale) {
  train_.scalar("batch_loss", loss, step);
  train_.scalar("batch_lr", lr, step);
  if (loss_scale > 0) train_.scalar("batch_loss_scale", loss_scale, step);
}

}  // namespace mgpu::train
