// Archive files: LibTorch serialize archives with a format mark and a CRC32 trailer, written
// durably. Checkpoints and weights files are both made this way.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>

namespace mgpu::train {

/// Adds "format" = format to archive and writes it to path atomically and durably
/// (write_atomically, train/files/AtomicFile.h), followed by a checksum trailer. what names the kind of
/// file in messages ("checkpoint", "weights file").
void save_archive(torch::serialize::OutputArchive& archive, const std::string& format,
                  const std::string& what, const std::filesystem::path& path);

/// Reads an archive written by save_archive with the same format, tensors onto device.
/// what names the kind of file in messages ("checkpoint", "weights file"). Throws
/// data::InputError for a missing, truncated, changed or foreign file.
torch::serialize::InputArchive load_archive(const std::filesystem::path& file,
                                            const std::string& format, const std::string& what,
                                            const torch::Device& device);

}  // namespace mgpu::train
