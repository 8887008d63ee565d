// Atomic, durable file writes for everything a run leaves, and the early check that an
// output directory is writable.
#pragma once

#include <filesystem>
#include <functional>
#include <exception>
#include <string>
#include <vector>

namespace mgpu::train {

/// Writes via path + ".tmp", fsyncs it, renames it into place and fsyncs the directory, so a
/// reader never sees a half-written file and a failure or crash at any moment leaves the
/// previous version in place. Throws std::runtime_error naming the path.
void write_atomically(const std::filesystem::path& path,
                      const std::function<void(const std::filesystem::path& tmp)>& write);
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

/// Creates dir (and its parents) and proves it writable now, before work that depends on it;
/// throws data::InputError naming flag and dir otherwise.
void prepare_output_dir(const std::filesystem::path& dir, const std::string& flag);

/// Refuses (data::InputError naming flag) an output path that cannot be a file: an existing
/// directory, or a name ending in '/'; example is a file name to suggest ("plot.png").
void check_output_file(const std::filesystem::path& path, const std::string& flag,
                       const std::string& example);

/// prepare_output_dir that remembers the directories it creates and, if it is destroyed by an
/// exception, removes those that still hold no file: a command refused or failed before it
/// wrote anything leaves nothing behind.
class NewDirectories {
 public:
  NewDirectories() = default;
  NewDirectories(const NewDirectories&) = delete;
  NewDirectories& operator=(const NewDirectories&) = delete;
  ~NewDirectories();
  void prepare(const std::filesystem::path& dir, const std::string& flag);
  /// A directory no other run has: base, or base-2, base-3, ... if taken (created at once, so
  /// two runs started in the same second never share one). Returns the one it made.
  std::filesystem::path prepare_new(const std::filesystem::path& base, const std::string& flag);

 private:
  std::vector<std::filesystem::path> created_;  // the outermost new directory of each
  int exceptions_ = std::uncaught_exceptions();
};

}  // namespace mgpu::train
