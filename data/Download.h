// Fetching CIFAR-10 or CIFAR-100 when it is not there, as Keras's cifar10.load_data() does: the official
// archive over HTTP(S) (libcurl), its MD5 checked (OpenSSL), extracted safely (libarchive).
#pragma once

#include <filesystem>
#include <ostream>
#include <string>

namespace mgpu::data {

struct DownloadSpec {
  std::string url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
  std::string md5 = "c32a1d4ab5d03f1284b67883e8d87530";
  std::string archive_name = "cifar-10-binary.tar.gz";
  std::string folder = "cifar-10-batches-bin";  // the archive's one top-level folder
  std::string first_file = "data_batch_1.bin";  // in folder: says a complete extraction is there
  std::string name = "CIFAR-10";                // for messages
};

/// The official archive, unless MGPU_CIFAR10_URL (a mirror, or a test's server) and
/// MGPU_CIFAR10_MD5 say otherwise.
DownloadSpec cifar10_download();

/// cifar-100-binary.tar.gz, unless MGPU_CIFAR100_URL and MGPU_CIFAR100_MD5 say otherwise.
DownloadSpec cifar100_download();

/// Makes dir hold the archive's contents. dir/archive_name is reused if its MD5 matches (the
/// cache); otherwise the archive is downloaded to a temporary name (a progress bar on
/// `progress`), its MD5 checked, and only then renamed into place, so an interrupted or corrupt
/// download is never used. Extraction refuses absolute paths, "..", links and special files,
/// and moves the result into dir only when all of it is out. Throws std::runtime_error naming
/// the URL or file and what went wrong; leaves no partial files behind.
void download_and_extract(const DownloadSpec& spec, const std::filesystem::path& dir,
                          std::ostream& progress);

/// The MD5 of a file as 32 lower-case hex digits; throws std::runtime_error naming it.
std::string md5_of_file(const std::filesystem::path& file);

}  // namespace mgpu::data
