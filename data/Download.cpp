// libcurl for the transfer, OpenSSL for the MD5, libarchive for the tarball.
#include "data/Download.h"

#include "data/TextBar.h"  // defines: TextBar

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

namespace {

// spec, with the URL and MD5 from the environment variables PREFIX_URL and PREFIX_MD5 if set.
DownloadSpec from_environment(DownloadSpec spec, const std::string& prefix) {
  if (const char* url = std::getenv((prefix + "_URL").c_str()); url && *url) spec.url = url;
  if (const char* md5 = std::getenv((prefix + "_MD5").c_str()); md5 && *md5) spec.md5 = md5;
  return spec;
}

}  // namespace

DownloadSpec cifar10_download() { return from_environment(DownloadSpec{}, "MGPU_CIFAR10"); }

DownloadSpec cifar100_download() {
  return from_environment({"https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                           "03b5dce01913d631647c71ecec9e9cb8", "cifar-100-binary.tar.gz",
                           "cifar-100-binary", "train.bin", "CIFAR-100"},
                          "MGPU_CIFAR100");
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

// "12.3 of 162.2 MB", or "of ?" while the size is unknown.
void draw_bytes(TextBar& bar, double done, double total, bool last = false) {
  bar.draw(total > 0 ? done / total : 0.0,
           fmt::format("{:.1f} of {} MB", done / 1e6,
                       total > 0 ? fmt::format("{:.1f}", total / 1e6) : std::string("?")),
           last);
}

void download(const std::string& url, const fs::path& to, std::ostream& progress) {
  static const bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!initialised) throw std::runtime_error("libcurl could not be initialised");
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(to.c_str(), "wb"), std::fclose);
  if (!file) {
    throw std::runtime_error(fmt::format("cannot write {}: {}", to.string(), std::strerror(errno)));
  }
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  TextBar bar(progress, "downloading " + to.filename().string());
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
                     draw_bytes(*static_cast<TextBar*>(b), static_cast<double>(done),
                                static_cast<double>(total));
                     return 0;
                   });
  const CURLcode result = curl_easy_perform(curl.get());
  curl_off_t size = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_SIZE_DOWNLOAD_T, &size);
  draw_bytes(bar, static_cast<double>(size), static_cast<double>(size), /*last=*/true);
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
      progress << fmt::format("{} is not in {}: downloading {}\n", spec.name, dir.string(),
                              spec.url);
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
    progress << fmt::format("extracting {} into {}\n", archive_file.string(), dir.string())
             << std::flush;
    extract(archive_file, staging);
    const std::string& name = spec.folder;
    if (!fs::exists(staging / name)) {
      throw std::runtime_error(fmt::format("{} holds no {}/ folder", archive_file.string(), name));
    }
    std::error_code ec;
    fs::rename(staging / name, dir / name, ec);
    if (ec && !fs::exists(dir / name / spec.first_file)) {  // else another process won
      throw std::runtime_error(fmt::format("cannot move the extracted files to {}: {}",
                                           (dir / name).string(), ec.message()));
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
