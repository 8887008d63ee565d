// What the tests make for themselves: temporary folders, small CIFAR-10 and IDX files, and
// synthetic image data sets.
#pragma once

#include <dirent.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "app/Cli.h"
#include "data/Dataset.h"
#include "data/InputError.h"
#include "train/Signals.h"
#include "train/TrainConfig.h"
#include "train/Trainer.h"

namespace mgpu::testing {

/// Paths this build knows: the mgpu binary, the Python with torch, the source tree. Defined in
/// a file CMake generates in the build folder (tests/CMakeLists.txt), so that the test files
/// themselves compile the same in every clone and ccache can reuse their objects.
extern const char* const kMgpuBinary;
extern const char* const kPython;
extern const char* const kSourceDir;

// The fixtures walk folders with POSIX calls, not std::filesystem::remove_all or directory
// iterators: those two crashed where a binary's std::filesystem bound to PyPI LibTorch's
// private copy (Ubuntu 24.04's toolchain; docs/architecture.md). std::filesystem is now linked
// into every binary, which Toolchain.* checks; the fixtures stay independent of it.

/// Deletes a folder and everything in it; a missing folder is no error.
inline void remove_tree(const std::filesystem::path& dir) {
  nftw(
      dir.c_str(),
      [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

/// The names in a folder, without "." and "..".
inline std::vector<std::string> list_dir(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    closedir(d);
  }
  return names;
}

/// A fresh empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("mgpu-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    remove_tree(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { remove_tree(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// A TCP socket bound to 127.0.0.1 on a port the kernel picks; *port receives the port.
inline int bound_loopback_socket(int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it).
inline int free_port() {
  int port = 0;
  close(bound_loopback_socket(&port));
  return port;
}

/// The InputError message of f(), or "" if f() did not throw one.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const mgpu::data::InputError& e) {
    return e.what();
  }
  return "";
}

/// The InputError message of parsing `mgpu ARGS...`, or "" if it parsed.
inline std::string refusal(std::vector<std::string> args) {
  args.insert(args.begin(), "mgpu");
  try {
    mgpu::app::parse_command_line(args);
  } catch (const mgpu::data::InputError& e) {
    return e.what();
  }
  return "";
}

struct Run {
  int code;
  std::string err;
  std::string out;
};

/// Runs the real binary with args (a shell command line's words; prefix: e.g. variables);
/// returns its exit code, standard error and standard output.
inline Run run_mgpu(const std::string& args, const std::string& prefix = "") {
  TempDir tmp;
  const auto err_file = tmp.path() / "stderr", out_file = tmp.path() / "stdout";
  const std::string cmd = prefix + std::string(kMgpuBinary) + " " + args + " > " +
                          out_file.string() + " 2> " + err_file.string();
  const int status = std::system(cmd.c_str());
  std::ifstream err(err_file), out(out_file);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1,
          {std::istreambuf_iterator<char>(err), std::istreambuf_iterator<char>()},
          {std::istreambuf_iterator<char>(out), std::istreambuf_iterator<char>()}};
}

/// Every parameter and buffer of two models, bit for bit.
inline bool same_weights(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  auto ba = a.named_buffers(), bb = b.named_buffers();
  if (pa.size() != pb.size() || ba.size() != bb.size()) return false;
  for (const auto& item : pa) {
    if (!torch::equal(item.value(), pb[item.key()])) return false;
  }
  for (const auto& item : ba) {
    if (!torch::equal(item.value(), bb[item.key()])) return false;
  }
  return true;
}

inline void write_bytes(const std::filesystem::path& file, const std::vector<uint8_t>& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

/// CIFAR-10 records: record r has label labels[r] and pixel p (0..3071) = (r * 7 + p) % 256.
inline std::vector<uint8_t> cifar_records(const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> bytes;
  for (size_t r = 0; r < labels.size(); ++r) {
    bytes.push_back(labels[r]);
    for (int p = 0; p < 3072; ++p) bytes.push_back(static_cast<uint8_t>((r * 7 + p) % 256));
  }
  return bytes;
}

/// The official layout: dir/cifar-10-batches-bin/data_batch_1..5.bin and test_batch.bin,
/// each with `per_file` records whose labels cycle 0..9.
inline std::filesystem::path write_cifar_dir(const std::filesystem::path& dir, int per_file) {
  const auto bin = dir / "cifar-10-batches-bin";
  std::filesystem::create_directories(bin);
  std::vector<uint8_t> labels;
  for (int i = 0; i < per_file; ++i) labels.push_back(static_cast<uint8_t>(i % 10));
  for (int b = 1; b <= 5; ++b) {
    write_bytes(bin / ("data_batch_" + std::to_string(b) + ".bin"), cifar_records(labels));
  }
  write_bytes(bin / "test_batch.bin", cifar_records(labels));
  return bin;
}

/// CIFAR-100 records: a coarse and a fine label byte each, then pixel bytes as cifar_records.
inline std::vector<uint8_t> cifar100_records(
    const std::vector<std::pair<uint8_t, uint8_t>>& coarse_fine) {
  std::vector<uint8_t> bytes;
  for (size_t r = 0; r < coarse_fine.size(); ++r) {
    bytes.push_back(coarse_fine[r].first);
    bytes.push_back(coarse_fine[r].second);
    for (int p = 0; p < 3072; ++p) bytes.push_back(static_cast<uint8_t>((r * 7 + p) % 256));
  }
  return bytes;
}

/// The official layout: dir/cifar-100-binary/train.bin and test.bin with `per_file` records
/// each, record i labelled coarse i % 20 and fine (5 * i) % 100.
inline std::filesystem::path write_cifar100_dir(const std::filesystem::path& dir, int per_file) {
  const auto bin = dir / "cifar-100-binary";
  std::filesystem::create_directories(bin);
  std::vector<std::pair<uint8_t, uint8_t>> labels;
  for (int i = 0; i < per_file; ++i) {
    labels.emplace_back(static_cast<uint8_t>(i % 20), static_cast<uint8_t>((5 * i) % 100));
  }
  write_bytes(bin / "train.bin", cifar100_records(labels));
  write_bytes(bin / "test.bin", cifar100_records(labels));
  return bin;
}

/// An unsigned-byte IDX file: magic 0x000008<dims>, big-endian sizes, then the data.
inline std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& shape,
                                      const std::vector<uint8_t>& data) {
  std::vector<uint8_t> bytes = {0, 0, 0x08, static_cast<uint8_t>(shape.size())};
  for (uint32_t s : shape) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(s >> shift));
  }
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

inline void write_gz(const std::filesystem::path& file, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(file.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

/// A whole file's bytes ("" when it cannot be read).
inline std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Writes a tensor's bytes as they are in memory (contiguous), as numpy's tofile() does.
inline void write_raw(const std::filesystem::path& file, const torch::Tensor& t) {
  const auto c = t.contiguous();
  std::ofstream(file, std::ios::binary)
      .write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
}

/// Synthetic images whose classes survive shifts and flips: horizontal stripes, vertical
/// stripes, a checkerboard (each `width` pixels wide, 0 or 160) and flat grey 80, in that
/// order for classes 0..3, plus uniform noise up to `noise`; labels cycle 0..classes-1.
struct Patterns {
  int64_t classes = 4;  // 1 to 4
  int64_t channels = 1;
  int64_t size = 28;  // height and width
  int64_t width = 2;  // of a stripe or a checkerboard square
  double noise = 40;
};

inline mgpu::data::Dataset pattern_dataset(int64_t n, uint64_t seed, const Patterns& p = {}) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto labels = torch::arange(n, torch::kInt64).remainder(p.classes);
  auto r = torch::arange(p.size).view({p.size, 1}).expand({p.size, p.size}).floor_divide(p.width);
  auto c = torch::arange(p.size).view({1, p.size}).expand({p.size, p.size}).floor_divide(p.width);
  const std::vector<torch::Tensor> patterns = {
      (r.remainder(2) * 160).to(torch::kFloat32), (c.remainder(2) * 160).to(torch::kFloat32),
      ((r + c).remainder(2) * 160).to(torch::kFloat32), torch::full({p.size, p.size}, 80.0f)};
  auto images = torch::stack(patterns).index_select(0, labels).unsqueeze(1);  // [n, 1, s, s]
  images = images + p.noise * torch::rand({n, p.channels, p.size, p.size}, gen);
  return {images.clamp(0, 255).to(torch::kUInt8), labels};
}

/// 48 noisy 1x28x28 images of two classes (horizontal or vertical stripes), the same every time.
inline const mgpu::data::Dataset& stripes() {
  static const auto d = pattern_dataset(48, 1, {/*classes=*/2, 1, 28, 1, 40});
  return d;
}

/// A convolution, batch norm and a linear layer: enough for every kind of parameter (4-d, 2-d,
/// 1-d), and shallow enough that two ways of computing the same six steps agree to 1e-7 (in
/// MiniGoogLeNet a rounding difference grows a thousandfold a step: docs/fidelity.md).
/// Cloneable: a Trainer of several replicas copies it.
struct SmallNetImpl : torch::nn::Cloneable<SmallNetImpl> {
  SmallNetImpl() { reset(); }
  void reset() override {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3)));
    bn = register_module("bn", torch::nn::BatchNorm2d(4));
    fc = register_module("fc", torch::nn::Linear(4 * 4 * 4, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return fc(pool_4x4(torch::relu(bn(conv(x)))).flatten(1));
  }
  // [B, C, H, W] -> [B, C, 4, 4]: adaptive average pooling's windows, each a mean, whose CUDA
  // backward is deterministic (adaptive_avg_pool2d's uses atomicAdd, which --deterministic
  // refuses), so that GPU tests of this net repeat bit for bit.
  static torch::Tensor pool_4x4(const torch::Tensor& x) {
    const auto window = [](int64_t i, int64_t size) {  // [start, end) as adaptive pooling's
      const int64_t start = i * size / 4, end = ((i + 1) * size + 3) / 4;
      return std::pair<int64_t, int64_t>{start, end - start};
    };
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < 4; ++i) {
      std::vector<torch::Tensor> cells;
      const auto [top, height] = window(i, x.size(2));
      for (int64_t j = 0; j < 4; ++j) {
        const auto [left, width] = window(j, x.size(3));
        cells.push_back(x.narrow(2, top, height).narrow(3, left, width).mean({2, 3}));
      }
      rows.push_back(torch::stack(cells, -1));  // [B, C, 4]
    }
    return torch::stack(rows, -2);  // [B, C, 4, 4]
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(SmallNet);

/// A quiet short run on the stripes: batches of 8, 2 epochs, seed 7.
inline mgpu::train::TrainConfig stripes_config() {
  mgpu::train::TrainConfig c;
  c.batch_per_device = 8;
  c.eval_batch = 32;
  c.epochs = 2;
  c.verbose = 0;
  c.seed = 7;
  return c;
}

/// Fits `trainer` on the stripes until a stop request (SIGUSR1, raised as its first epoch ends)
/// stops it after the next step, with a checkpoint: the first part of a resume test.
inline void stop_in_second_epoch(mgpu::train::Trainer& trainer, mgpu::train::Progress& progress) {
  mgpu::train::install_stop_handlers();
  EXPECT_THROW(trainer.fit(stripes(), stripes(), progress,
                           [](const mgpu::train::History&) { std::raise(SIGUSR1); }),
               mgpu::train::StopRequested);
  mgpu::train::clear_stop_request();
}

/// Largest difference between the two models' parameters, relative to the largest value.
inline double relative_difference(torch::nn::Module& a, torch::nn::Module& b) {
  double diff = 0, scale = 0;
  auto pb = b.named_parameters();
  for (const auto& item : a.named_parameters()) {
    const auto x = item.value().detach().cpu(), y = pb[item.key()].detach().cpu();
    diff = std::max(diff, (x - y).abs().max().item<double>());
    scale = std::max(scale, x.abs().max().item<double>());
  }
  return diff / scale;
}

}  // namespace mgpu::testing
