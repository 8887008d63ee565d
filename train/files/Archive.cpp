// save_archive / load_archive: format mark, CRC32 trailer, atomic write.
#include "train/files/Archive.h"

#include <fmt/core.h>
#include <zlib.h>

#include <fstream>
#include <iterator>

#include "data/InputError.h"  // defines: InputError
#include "train/files/AtomicFile.h"  // defines: write_atomically
#include "data/ReadFile.h"  // defines: read_file

namespace mgpu::train {

namespace {

// An archive ends with "MGPU-CRC32 <crc32 of what precedes, 8 hex> <its size, 16 hex>\n".
constexpr size_t kTrailerBytes = 37;

std::string checksum_trailer(const std::string& payload) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t at = 0; at < payload.size(); at += 1u << 30) {  // crc32 takes a uInt length
    const auto len = static_cast<uInt>(std::min<size_t>(1u << 30, payload.size() - at));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(payload.data() + at), len);
  }
  return fmt::format("MGPU-CRC32 {:08x} {:016x}\n", crc, payload.size());
}

}  // namespace

void save_archive(torch::serialize::OutputArchive& archive, const std::string& format,
                  const std::string& what, const std::filesystem::path& path) {
  archive.write("format", c10::IValue(format));
  std::string bytes;
  archive.save_to([&](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  bytes += checksum_trailer(bytes);
  write_atomically(path, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw std::runtime_error(fmt::format("cannot write {} {}", what, tmp.string()));
  });
}

torch::serialize::InputArchive load_archive(const std::filesystem::path& file,
                                            const std::string& format, const std::string& what,
                                            const torch::Device& device) {
  const std::string bytes = data::read_file(file, what);
  // LibTorch's archive reader does not notice changed bytes inside a tensor: the trailer does.
  size_t payload = bytes.size();
  if (bytes.size() >= kTrailerBytes &&
      bytes.compare(bytes.size() - kTrailerBytes, 11, "MGPU-CRC32 ") == 0) {
    payload = bytes.size() - kTrailerBytes;
    if (checksum_trailer(bytes.substr(0, payload)) != bytes.substr(payload)) {
      throw data::InputError(
          fmt::format("{} {} is damaged: its contents do not match the checksum written with them",
                      what, file.string()));
    }
  }
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(bytes.data(), payload, device);
  } catch (const c10::Error& e) {
    // Python's torch.save (and so `mgpu export`) writes data.pkl alone; LibTorch's archives,
    // mgpu's among them, also hold constants.pkl.
    if (bytes.find("data.pkl") != std::string::npos &&
        bytes.find("constants.pkl") == std::string::npos) {
      throw data::InputError(fmt::format(
          "{} was written by torch.save (as `mgpu export`'s state_dict is), not an mgpu {} "
          "(a run's {})", file.string(), what,
          what == "checkpoint" ? "checkpoints/ckpt-*.pt" : "model.pt, or the run directory"));
    }
    // LibTorch's first line names the failure; the rest is miniz's paragraph on zip files.
    const std::string why = e.what_without_backtrace();
    throw data::InputError(fmt::format("{} {} cannot be read (truncated or damaged?): {}", what,
                                       file.string(), why.substr(0, why.find('\n'))));
  }
  c10::IValue mark;
  if (!archive.try_read("format", mark) || !mark.isString() || mark.toStringRef() != format) {
    throw data::InputError(
        fmt::format("{} is not an mgpu {} (no '{}' mark)", file.string(), what, format));
  }
  if (payload == bytes.size()) {  // mgpu's archive, but its last bytes are not the checksum
    throw data::InputError(fmt::format(
        "{} {} is damaged: it does not end with the checksum mgpu writes (truncated, or bytes "
        "added at its end?)", what, file.string()));
  }
  return archive;
}

}  // namespace mgpu::train
