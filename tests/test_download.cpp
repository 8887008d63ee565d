// Downloading CIFAR-10: a server on 127.0.0.1 started by the test serves fixture archives
// (good, truncated, with a wrong checksum, with an entry that escapes the target or a link).
#include <archive.h>
#include <archive_entry.h>
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "Fixtures.h"
#include "data/Cifar10.h"
#include "data/Download.h"

using namespace mgpu::data;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;

namespace {

// Serves `body` to every GET on 127.0.0.1 (a port the kernel picks) until destroyed. With
// `cut`, it announces the whole length but closes the connection halfway through; `status`
// other than 200 sends that status and no body.
class Server {
 public:
  explicit Server(std::string body, bool cut = false, int status = 200)
      : body_(std::move(body)), cut_(cut), status_(status) {
    fd_ = mgpu::testing::bound_loopback_socket(&port_);
    listen(fd_, 4);
    thread_ = std::thread([this] { serve(); });
  }
  ~Server() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}/cifar-10-binary.tar.gz", port_); }
  int requests() const { return requests_; }

 private:
  void serve() {
    while (true) {
      const int client = accept(fd_, nullptr, nullptr);
      if (client < 0) return;
      ++requests_;
      char request[4096];
      (void)!read(client, request, sizeof request);  // one GET; its details do not matter
      std::string reply;
      if (status_ != 200) {
        reply = fmt::format("HTTP/1.1 {} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            status_);
      } else {
        reply = fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body_.size()) +
                (cut_ ? body_.substr(0, body_.size() / 2) : body_);
      }
      (void)!write(client, reply.data(), reply.size());
      close(client);
    }
  }

  std::string body_;
  bool cut_;
  int status_;
  int fd_ = -1, port_ = 0;
  std::atomic<int> requests_{0};
  std::thread thread_;
};

struct Entry {
  std::string name;
  std::string data;
  mode_t type;
  std::string link;  // for a symbolic link
};

Entry file(const std::string& name, const std::string& data) { return {name, data, AE_IFREG, ""}; }
Entry folder(const std::string& name) { return {name, "", AE_IFDIR, ""}; }
Entry symlink_to(const std::string& name, const std::string& target) {
  return {name, "", AE_IFLNK, target};
}

// A .tar.gz in memory, written by libarchive.
std::string tar_gz(const std::vector<Entry>& entries) {
  std::vector<char> buffer(1 << 22);
  size_t used = 0;
  archive* out = archive_write_new();
  archive_write_add_filter_gzip(out);
  archive_write_set_format_pax_restricted(out);
  archive_write_open_memory(out, buffer.data(), buffer.size(), &used);
  for (const auto& e : entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.name.c_str());
    archive_entry_set_filetype(entry, e.type);
    archive_entry_set_perm(entry, 0644);
    if (e.type == AE_IFLNK) archive_entry_set_symlink(entry, e.link.c_str());
    archive_entry_set_size(entry, static_cast<la_int64_t>(e.data.size()));
    archive_write_header(out, entry);
    archive_write_data(out, e.data.data(), e.data.size());
    archive_entry_free(entry);
  }
  archive_write_close(out);
  archive_write_free(out);
  return std::string(buffer.data(), used);
}

// The official layout with 3 records a file.
std::vector<Entry> cifar_entries() {
  const auto records = mgpu::testing::cifar_records({0, 1, 2});
  const std::string bytes(records.begin(), records.end());
  std::vector<Entry> entries = {folder("cifar-10-batches-bin/")};
  for (int b = 1; b <= 5; ++b) {
    entries.push_back(file(fmt::format("cifar-10-batches-bin/data_batch_{}.bin", b), bytes));
  }
  entries.push_back(file("cifar-10-batches-bin/test_batch.bin", bytes));
  return entries;
}

// CIFAR-100's layout with 3 records a file.
std::vector<Entry> cifar100_entries() {
  const auto records = mgpu::testing::cifar100_records({{0, 10}, {1, 20}, {19, 99}});
  const std::string bytes(records.begin(), records.end());
  return {folder("cifar-100-binary/"), file("cifar-100-binary/train.bin", bytes),
          file("cifar-100-binary/test.bin", bytes)};
}

std::string md5_of(const std::string& bytes) {
  TempDir tmp;
  std::ofstream(tmp.path() / "f", std::ios::binary) << bytes;
  return md5_of_file(tmp.path() / "f");
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Download, Md5IsOpenSslsAndTheOfficialArchiveIsTheDefault) {
  EXPECT_EQ(md5_of("abc"), "900150983cd24fb0d6963f7d28e17f72");  // RFC 1321's test vector
  const DownloadSpec spec;
  EXPECT_EQ(spec.url, "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
  EXPECT_EQ(spec.md5, "c32a1d4ab5d03f1284b67883e8d87530");
  const DownloadSpec cifar100 = cifar100_download();
  EXPECT_EQ(cifar100.url, "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz");
  EXPECT_EQ(cifar100.md5, "03b5dce01913d631647c71ecec9e9cb8");
  EXPECT_EQ(cifar100.folder, "cifar-100-binary");
}

TEST(Download, FetchesChecksExtractsAndCachesTheArchive) {
  const std::string archive = tar_gz(cifar_entries());
  Server server(archive);
  TempDir tmp;
  std::ostringstream progress;
  const DownloadSpec spec{server.url(), md5_of(archive)};
  download_and_extract(spec, tmp.path(), progress);
  EXPECT_NE(progress.str().find("downloading cifar-10-binary.tar.gz"), std::string::npos);
  EXPECT_NE(progress.str().find("extracting " + (tmp.path() / "cifar-10-binary.tar.gz").string() +
                                " into " + tmp.path().string()),
            std::string::npos)
      << progress.str();
  const auto split = load_cifar10(tmp.path(), 0, 0);
  EXPECT_EQ(split.train.size(), 15);
  EXPECT_EQ(split.test.size(), 3);
  // The archive stays as a cache: a second extraction does not download again.
  mgpu::testing::remove_tree(tmp.path() / "cifar-10-batches-bin");
  download_and_extract(spec, tmp.path(), progress);
  EXPECT_EQ(server.requests(), 1);
  EXPECT_TRUE(find_cifar10_dir(tmp.path()));
  // Only the archive and the data are left: no partial download, no staging folder.
  auto names = mgpu::testing::list_dir(tmp.path());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"cifar-10-batches-bin", "cifar-10-binary.tar.gz"}));
}

TEST(Download, ACorruptOrTruncatedDownloadIsNeverUsed) {
  const std::string archive = tar_gz(cifar_entries());
  TempDir tmp;
  std::ostringstream progress;
  {
    Server server(archive);
    const auto message = error_of([&] {
      download_and_extract({server.url(), std::string(32, '0')}, tmp.path(), progress);
    });
    EXPECT_NE(message.find("is corrupt: its MD5 is " + md5_of(archive) + ", expected 000"),
              std::string::npos)
        << message;
  }
  EXPECT_TRUE(mgpu::testing::list_dir(tmp.path()).empty());
  {
    Server server(archive, /*cut=*/true);
    const auto message =
        error_of([&] { download_and_extract({server.url(), md5_of(archive)}, tmp.path(), progress); });
    EXPECT_NE(message.find("downloading " + server.url() + " failed"), std::string::npos)
        << message;
  }
  EXPECT_TRUE(mgpu::testing::list_dir(tmp.path()).empty());
  {
    Server server("", false, 404);
    const auto message =
        error_of([&] { download_and_extract({server.url(), md5_of(archive)}, tmp.path(), progress); });
    EXPECT_NE(message.find("404"), std::string::npos) << message;
  }
  EXPECT_TRUE(mgpu::testing::list_dir(tmp.path()).empty());
}

TEST(Download, AStaleCachedArchiveIsDownloadedAgain) {
  const std::string archive = tar_gz(cifar_entries());
  Server server(archive);
  TempDir tmp;
  std::ofstream(tmp.path() / "cifar-10-binary.tar.gz") << "an older, broken download";
  std::ostringstream progress;
  download_and_extract({server.url(), md5_of(archive)}, tmp.path(), progress);
  EXPECT_EQ(server.requests(), 1);
  EXPECT_NE(progress.str().find("does not match its MD5"), std::string::npos);
  EXPECT_TRUE(find_cifar10_dir(tmp.path()));
}

TEST(Download, EntriesThatEscapeTheTargetOrAreLinksAreRefused) {
  const std::vector<std::pair<Entry, std::string>> bad = {
      {file("../escaped.bin", "x"), "unsafe entry '../escaped.bin' (outside the target)"},
      {file("cifar-10-batches-bin/../../escaped.bin", "x"), "outside the target"},
      {file("/tmp/absolute.bin", "x"), "outside the target"},
      {symlink_to("cifar-10-batches-bin/link", "/etc/passwd"), "(a link or special file)"},
  };
  for (const auto& [entry, expected] : bad) {
    auto entries = cifar_entries();
    entries.insert(entries.begin() + 1, entry);
    const std::string archive = tar_gz(entries);
    Server server(archive);
    TempDir tmp;
    std::ostringstream progress;
    const auto target = tmp.path() / "data";
    const auto message =
        error_of([&] { download_and_extract({server.url(), md5_of(archive)}, target, progress); });
    EXPECT_NE(message.find(expected), std::string::npos) << entry.name << ": " << message;
    EXPECT_FALSE(fs::exists(tmp.path() / "escaped.bin"));
    EXPECT_FALSE(find_cifar10_dir(target)) << entry.name;  // nothing half-extracted
    EXPECT_EQ(mgpu::testing::list_dir(target), std::vector<std::string>{"cifar-10-binary.tar.gz"});
  }
}

TEST(DownloadBinary, TrainFetchesMissingCifarUnlessForbidden) {
  const std::string archive = tar_gz(cifar_entries());
  Server server(archive);
  TempDir tmp;
  const auto run = [&](const std::string& flags) {
    const std::string cmd = fmt::format(
        "MGPU_CIFAR10_URL={} MGPU_CIFAR10_MD5={} {} train --gpus 0 --threads 1 --dataset cifar10 "
        "--epochs 1 --batch-per-device 5 --verbose 0 --out-dir {} {} 2> {}",
        server.url(), md5_of(archive), mgpu::testing::kMgpuBinary, (tmp.path() / "run").string(),
        flags, (tmp.path() / "err").string());
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  const auto err = [&] {
    std::ifstream in(tmp.path() / "err");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  EXPECT_EQ(run("--no-download --data-dir " + (tmp.path() / "none").string()), 2);
  EXPECT_NE(err().find("no CIFAR-10 files in"), std::string::npos) << err();
  EXPECT_EQ(server.requests(), 0);
  EXPECT_EQ(run("--data-dir " + (tmp.path() / "data").string()), 0) << err();
  EXPECT_NE(err().find("downloading " + server.url()), std::string::npos) << err();
  EXPECT_EQ(server.requests(), 1);
  EXPECT_TRUE(fs::exists(tmp.path() / "run" / "model.pt"));
}

// CIFAR-100 as users get it: train fetches the archive, the weights remember the coarse labels,
// and evaluate (--dataset auto) loads the same data set again and names its classes.
TEST(DownloadBinary, TrainFetchesCifar100AndEvaluateFindsItsLabelsAgain) {
  const std::string archive = tar_gz(cifar100_entries());
  Server server(archive);
  TempDir tmp;
  const auto data = tmp.path() / "data";
  const auto run = tmp.path() / "run";
  const auto mgpu = [&](const std::string& args) {
    const std::string cmd =
        fmt::format("MGPU_CIFAR100_URL={} MGPU_CIFAR100_MD5={} {} {} > {} 2>&1", server.url(),
                    md5_of(archive), mgpu::testing::kMgpuBinary, args,
                    (tmp.path() / "out").string());
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  const auto out = [&] {
    std::ifstream in(tmp.path() / "out");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  ASSERT_EQ(mgpu(fmt::format("train --gpus 0 --threads 1 --dataset cifar100 --labels coarse "
                             "--epochs 1 --batch-per-device 3 --verbose 0 --data-dir {} "
                             "--out-dir {}",
                             data.string(), run.string())),
            0)
      << out();
  EXPECT_NE(out().find("CIFAR-100 is not in"), std::string::npos) << out();
  EXPECT_EQ(server.requests(), 1);
  EXPECT_TRUE(fs::exists(data / "cifar-100-binary" / "train.bin"));
  ASSERT_EQ(mgpu(fmt::format("evaluate --gpus 0 --threads 1 --no-download --weights {} "
                             "--data-dir {}",
                             run.string(), data.string())),
            0)
      << out();
  EXPECT_NE(out().find("on cifar100-coarse"), std::string::npos) << out();
  EXPECT_NE(out().find("vehicles_2"), std::string::npos) << out();  // coarse class 19
  EXPECT_EQ(out().find("worm"), std::string::npos) << out();       // not fine class 99
  EXPECT_EQ(server.requests(), 1);
}
