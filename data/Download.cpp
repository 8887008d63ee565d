// libcurl for the transfer, OpenSSL for the MD5, libarchive for the tarball.
#include "data/Download.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <ftw.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

#ifdef MGPU_WITH_DOWNLOAD
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#endif

namespace mgpu::data {
namespace fs = std::filesystem;

DownloadSpec cifar10_download() {
  DownloadSpec spec;
  if (const char* url = std::getenv("MGPU_CIFAR10_URL"); url && *url) spec.url = url;
  if (const char* md5 = std::getenv("MGPU_CIFAR10_MD5"); md5 && *md5) spec.md5 = md5;
  return spec;
}

#ifndef MGPU_WITH_DOWNLOAD

void download_and_extract(const DownloadSpec& spec, const fs::path& dir, std::ostream&) {
  throw std::runtime_error(fmt::format(
      "this mgpu was built without downloads (MGPU_WITH_DOWNLOAD=OFF): fetch {} and unpack it "
      "in {}",
      spec.url, dir.string()));
}

std::string md5_of_file(const fs::path& file) {
  throw std::runtime_error("no MD5 without MGPU_WITH_DOWNLOAD: " + file.string());
}

#else

namespace {

// Deletes a folder tree (nftw, not std::filesystem::remove_all: see docs/architecture.md).
void remove_tree(const fs::path& dir) {
  nftw(
      dir.c_str(),
      [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

void fsync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// A text progress bar, redrawn at most ten times a second.
class Bar {
 public:
  Bar(std::ostream& out, std::string name) : out_(out), name_(std::move(name)) {}
  void draw(double done, double total, bool last = false) {
    const auto now = std::chrono::steady_clock::now();
    if (!last && now - drawn_ < std::chrono::milliseconds(100)) return;
    drawn_ = now;
    constexpr int kWidth = 30;
    const int filled = total > 0 ? static_cast<int>(kWidth * done / total) : 0;
    out_ << fmt::format("\rdownloading {}: {:.1f} of {} MB [{}{}]", name_, done / 1e6,
                        total > 0 ? fmt::format("{:.1f}", total / 1e6) : std::string("?"),
                        std::string(static_cast<size_t>(std::min(filled, kWidth)), '='),
                        std::string(static_cast<size_t>(kWidth - std::min(filled, kWidth)), ' '))
         << (last ? "\n" : "") << std::flush;
  }

 private:
  std::ostream& out_;
  std::string name_;
  std::chrono::steady_clock::time_point drawn_{};
};

void download(const std::string& url, const fs::path& to, std::ostream& progress) {
  static const bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!initialised) throw std::runtime_error("libcurl could not be initialised");
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(to.c_str(), "wb"), std::fclose);
  if (!file) {
    throw std::runtime_error(fmt::format("cannot write {}: {}", to.string(), std::strerror(errno)));
  }
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  Bar bar(progress, to.filename().string());
  char error[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_FAILONERROR, 1L);  // HTTP 4xx/5xx are errors
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);  // a stalled transfer fails
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, 60L);  // after a minute, not never
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, file.get());
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, +[](char* data, size_t, size_t n, void* f) {
    return std::fwrite(data, 1, n, static_cast<FILE*>(f));
  });
  curl_easy_setopt(curl.get(), CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFODATA, &bar);
  curl_easy_setopt(curl.get(), CURLOPT_XFERINFOFUNCTION,
                   +[](void* b, curl_off_t total, curl_off_t done, curl_off_t, curl_off_t) {
                     static_cast<Bar*>(b)->draw(static_cast<double>(done), static_cast<double>(total));
                     return 0;
                   });
  const CURLcode result = curl_easy_perform(curl.get());
  curl_off_t size = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_SIZE_DOWNLOAD_T, &size);
  bar.draw(static_cast<double>(size), static_cast<double>(size), /*last=*/true);
  if (result != CURLE_OK) {
    throw std::runtime_error(fmt::format("downloading {} failed: {}", url,
                                         *error ? error : curl_easy_strerror(result)));
  }
  if (std::fflush(file.get()) != 0 || ::fsync(fileno(file.get())) != 0) {
    throw std::runtime_error(fmt::format("cannot write {}: {}", to.string(), std::strerror(errno)));
  }
}

// An archive entry's path, if it stays inside the target folder.
bool is_safe_path(const std::string& name) {
  if (name.empty() || name.front() == '/') return false;
  for (const auto& part : fs::path(name)) {
    if (part == "..") return false;
  }
  return true;
}

// Extracts every regular file and folder of the archive under `into`; refuses anything else.
void extract(const fs::path& archive_file, const fs::path& into) {
  std::unique_ptr<archive, int (*)(archive*)> in(archive_read_new(), archive_read_free);
  archive_read_support_filter_gzip(in.get());
  archive_read_support_format_tar(in.get());
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(fmt::format("cannot extract {}: {}", archive_file.string(), what));
  };
  if (archive_read_open_filename(in.get(), archive_file.c_str(), 1 << 16) != ARCHIVE_OK) {
    fail(archive_error_string(in.get()));
  }
  archive_entry* entry = nullptr;
  int status;
  while ((status = archive_read_next_header(in.get(), &entry)) == ARCHIVE_OK) {
    const std::string name = archive_entry_pathname(entry);
    const auto type = archive_entry_filetype(entry);
    if (!is_safe_path(name)) fail(fmt::format("unsafe entry '{}' (outside the target)", name));
    if (archive_entry_hardlink(entry) || (type != AE_IFREG && type != AE_IFDIR)) {
      fail(fmt::format("unsafe entry '{}' (a link or special file)", name));
    }
    const fs::path path = into / name;
    fs::create_directories(type == AE_IFDIR ? path : path.parent_path());
    if (type == AE_IFDIR) continue;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int r;
    while ((r = archive_read_data_block(in.get(), &block, &size, &offset)) == ARCHIVE_OK) {
      out.write(static_cast<const char*>(block), static_cast<std::streamsize>(size));
    }
    if (r != ARCHIVE_EOF) fail(fmt::format("'{}': {}", name, archive_error_string(in.get())));
    if (!out.flush()) fail(fmt::format("cannot write {}", path.string()));
  }
  if (status != ARCHIVE_EOF) fail(archive_error_string(in.get()));
}

}  // namespace

std::string md5_of_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read {}", file.string()));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_md5(), nullptr);
  std::vector<char> buffer(1 << 16);
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

void download_and_extract(const DownloadSpec& spec, const fs::path& dir, std::ostream& progress) {
  fs::create_directories(dir);
  const fs::path archive_file = dir / spec.archive_name;
  const std::string suffix = fmt::format(".{}.part", ::getpid());
  if (fs::exists(archive_file) && md5_of_file(archive_file) != spec.md5) {
    progress << fmt::format("{} does not match its MD5 {}: downloading it again\n",
                            archive_file.string(), spec.md5);
    fs::remove(archive_file);
  }
  if (!fs::exists(archive_file)) {
    fs::path part = archive_file;
    part += suffix;
    try {
      progress << fmt::format("CIFAR-10 is not in {}: downloading {}\n", dir.string(), spec.url);
      download(spec.url, part, progress);
      const std::string md5 = md5_of_file(part);
      if (md5 != spec.md5) {
        throw std::runtime_error(fmt::format(
            "the download of {} is corrupt: its MD5 is {}, expected {}", spec.url, md5, spec.md5));
      }
      fs::rename(part, archive_file);
      fsync_path(dir, O_RDONLY | O_DIRECTORY);
    } catch (...) {
      std::error_code ec;
      fs::remove(part, ec);
      throw;
    }
  }
  // Everything is extracted aside first; the data appear in dir only when complete.
  fs::path staging = dir / (".extract" + suffix);
  try {
    remove_tree(staging);
    extract(archive_file, staging);
    for (const auto& name : {"cifar-10-batches-bin"}) {
      if (!fs::exists(staging / name)) {
        throw std::runtime_error(fmt::format("{} holds no {}/ folder", archive_file.string(), name));
      }
      std::error_code ec;
      fs::rename(staging / name, dir / name, ec);
      if (ec && !fs::exists(dir / name / "data_batch_1.bin")) {  // else another process won
        throw std::runtime_error(fmt::format("cannot move the extracted files to {}: {}",
                                             (dir / name).string(), ec.message()));
      }
    }
    remove_tree(staging);
    fsync_path(dir, O_RDONLY | O_DIRECTORY);
  } catch (...) {
    remove_tree(staging);
    throw;
  }
}

#endif

}  // namespace mgpu::data
