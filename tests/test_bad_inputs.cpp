// The corpus of bad inputs: every one, given to the real `mgpu`, ends with exit code 2 (usage
// or input) or 1 (failure while running), a message that names the culprit, and no
// half-written file; none crashes, aborts or hangs.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <functional>

#include "Fixtures.h"
#include "app/Cli.h"
#include "data/InputError.h"

#include <stb_image_write.h>  // the tests write their own images (StbWrite.cpp)

using mgpu::testing::TempDir;
namespace fs = std::filesystem;
using mgpu::testing::read_text;

namespace {

struct Case {
  std::string name;
  std::function<void(const fs::path& dir)> setup;  // files the case needs, under dir
  std::string args;     // {d} stands for dir
  int code;             // expected exit code
  std::string message;  // expected in standard error; {d} stands for dir
  std::string shell_prefix = "";
};

std::string expand(std::string text, const fs::path& dir) {
  for (size_t at; (at = text.find("{d}")) != std::string::npos;) text.replace(at, 3, dir.string());
  return text;
}

void resize(const fs::path& file, int64_t delta) {
  fs::resize_file(file, static_cast<uintmax_t>(static_cast<int64_t>(fs::file_size(file)) + delta));
}

void poke(const fs::path& file, int64_t offset, char byte) {
  std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(offset);
  f.put(byte);
}

// Files whose names say they were left half-written, anywhere under dir.
std::vector<std::string> leftovers(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& name : mgpu::testing::list_dir(dir)) {
    const fs::path p = dir / name;
    if (name.size() > 4 && (name.substr(name.size() - 4) == ".tmp" ||
                            name.substr(name.size() - 5) == ".part" || name.rfind(".extract", 0) == 0)) {
      found.push_back(p.string());
    }
    if (fs::is_directory(p)) {
      for (const auto& deeper : leftovers(p)) found.push_back(deeper);
    }
  }
  return found;
}

void fashion_dir(const fs::path& dir, uint32_t n = 16) {
  fs::create_directories(dir);
  std::vector<uint8_t> pixels(n * 28 * 28), labels(n);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i % 251);
  for (uint32_t i = 0; i < n; ++i) labels[i] = static_cast<uint8_t>(i % 10);
  for (const std::string prefix : {"train", "t10k"}) {
    mgpu::testing::write_gz(dir / (prefix + "-images-idx3-ubyte.gz"),
                            mgpu::testing::idx_bytes({n, 28, 28}, pixels));
    mgpu::testing::write_gz(dir / (prefix + "-labels-idx1-ubyte.gz"),
                            mgpu::testing::idx_bytes({n}, labels));
  }
}

const char* kCifar = "train --gpus 0 --threads 1 --dataset cifar10 --no-download --data-dir {d}/data "
                     "--epochs 1 --batch-per-device 16 --verbose 0 --out-dir {d}/run";
const char* kFashion = "train --gpus 0 --threads 1 --dataset fashion-mnist --data-dir {d}/fm "
                       "--epochs 1 --batch-per-device 8 --verbose 0 --out-dir {d}/run";

// A finished one-epoch CIFAR-10 run in dir/donor, made once: its checkpoint and weights.
fs::path donor() {
  static TempDir dir;
  static const bool made = [&] {
    mgpu::testing::write_cifar_dir(dir.path() / "data", 40);
    const std::string cmd = std::string(mgpu::testing::kMgpuBinary) + " " +
                            expand(kCifar, dir.path()) + " > /dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
  }();
  EXPECT_TRUE(made);
  return dir.path() / "run";
}

void good_cifar(const fs::path& d) { mgpu::testing::write_cifar_dir(d / "data", 40); }

const char* kCifar100 = "train --gpus 0 --threads 1 --dataset cifar100 --no-download --data-dir "
                        "{d}/data --epochs 1 --batch-per-device 16 --verbose 0 --out-dir {d}/run";
const char* kFolder = "train --gpus 0 --threads 1 --dataset folder --data-dir {d}/shapes --epochs 1 "
                      "--batch-per-device 4 --verbose 0 --out-dir {d}/run --model resnet20";

// d/shapes/train/{a,b}/0..3.png and d/shapes/test/{a,b}/0.png, colour 8x8 images.
void good_folder(const fs::path& d) {
  for (const std::string part : {"train", "test"}) {
    for (const std::string label : {"a", "b"}) {
      fs::create_directories(d / "shapes" / part / label);
      for (int i = 0; i < (part == "train" ? 4 : 1); ++i) {
        const std::vector<uint8_t> px(8 * 8 * 3, static_cast<uint8_t>(60 * i));
        const auto file = d / "shapes" / part / label / fmt::format("{}.png", i);
        stbi_write_png(file.c_str(), 8, 8, 3, px.data(), 8 * 3);
      }
    }
  }
}

void cifar_with_checkpoint(const fs::path& d, const std::function<void(const fs::path&)>& spoil) {
  good_cifar(d);
  fs::copy_file(donor() / "checkpoints" / "ckpt-e0001-s000000.pt", d / "x.pt");
  spoil(d / "x.pt");
}

std::vector<Case> corpus() {
  const auto bin = [](const fs::path& d) { return d / "data" / "cifar-10-batches-bin"; };
  return {
      // Data files.
      {"no CIFAR-10", [](const fs::path&) {}, kCifar, 2, "no CIFAR-10 files in {d}/data"},
      {"empty batch file", [&](const fs::path& d) { good_cifar(d); resize(bin(d) / "data_batch_1.bin", -static_cast<int64_t>(fs::file_size(bin(d) / "data_batch_1.bin"))); },
       kCifar, 2, "data_batch_1.bin"},
      {"one byte short", [&](const fs::path& d) { good_cifar(d); resize(bin(d) / "data_batch_2.bin", -1); },
       kCifar, 2, "data_batch_2.bin"},
      {"one byte long", [&](const fs::path& d) { good_cifar(d); resize(bin(d) / "test_batch.bin", 1); },
       kCifar, 2, "test_batch.bin"},
      {"label out of range", [&](const fs::path& d) { good_cifar(d); poke(bin(d) / "data_batch_4.bin", 3073, 10); },
       kCifar, 2, "data_batch_4.bin: record 1 has label 10"},
      {"missing batch file", [&](const fs::path& d) { good_cifar(d); fs::remove(bin(d) / "data_batch_3.bin"); },
       kCifar, 2, "data_batch_3.bin"},
      {"no CIFAR-100", [](const fs::path&) {}, kCifar100, 2, "no CIFAR-100 files in {d}/data"},
      {"CIFAR-100 fine label out of range", [](const fs::path& d) {
         mgpu::testing::write_cifar100_dir(d / "data", 40);
         poke(d / "data" / "cifar-100-binary" / "train.bin", 3074 + 1, 100);
       }, kCifar100, 2, "train.bin: record 1 has fine label 100 (expected 0-99)"},
      {"--labels with CIFAR-10", good_cifar, std::string(kCifar) + " --labels coarse", 2,
       "--labels is for --dataset cifar100, not cifar10"},
      {"image folder with an empty class", [](const fs::path& d) {
         good_folder(d);
         fs::create_directories(d / "shapes" / "train" / "c");
       }, kFolder, 2, "class folder {d}/shapes/train/c has no image files"},
      {"image folder with an undecodable image", [](const fs::path& d) {
         good_folder(d);
         std::ofstream(d / "shapes" / "train" / "a" / "x.jpg") << "not a jpeg";
       }, kFolder, 2, "image {d}/shapes/train/a/x.jpg cannot be decoded"},
      {"image folder with a zero-byte image", [](const fs::path& d) {
         good_folder(d);
         std::ofstream(d / "shapes" / "test" / "b" / "z.png");
       }, kFolder, 2, "image {d}/shapes/test/b/z.png is empty (0 bytes)"},
      {"image folder with grey and colour images", [](const fs::path& d) {
         good_folder(d);
         const std::vector<uint8_t> px(8 * 8, 1);
         stbi_write_png((d / "shapes" / "train" / "b" / "g.png").c_str(), 8, 8, 1, px.data(), 8);
       }, kFolder, 2, "image {d}/shapes/train/b/g.png is grey"},
      {"image folder whose test class training lacks", [](const fs::path& d) {
         good_folder(d);
         fs::rename(d / "shapes" / "test" / "b", d / "shapes" / "test" / "z");
       }, kFolder, 2, "test class 'z'"},
      {"image folder without classes", [](const fs::path& d) { fs::create_directories(d / "shapes"); },
       std::string(kFolder) + " --val-split 0.2", 2, "{d}/shapes has no class folders"},
      {"image folder without test images or --val-split", [](const fs::path& d) {
         good_folder(d);
         mgpu::testing::remove_tree(d / "shapes" / "test");
         fs::rename(d / "shapes" / "train", d / "shapes2");
         mgpu::testing::remove_tree(d / "shapes");
         fs::rename(d / "shapes2", d / "shapes");
       }, kFolder, 2, "give --val-split F"},
      {"image folder with a class none of whose images decodes", [](const fs::path& d) {
         good_folder(d);
         std::ofstream(d / "shapes" / "test" / "b" / "0.png") << "not a png";
       }, std::string(kFolder) + " --skip-bad-images", 2,
       "class folder {d}/shapes/test/b: none of its 1 image files can be decoded"},
      {"a model that cannot take the folder's images", good_folder,
       std::string(kFolder) + " --model minigooglenet", 2,
       "minigooglenet needs images of at least 28x28 pixels, got 8x8"},
      {"a bad --image-size", good_folder, std::string(kFolder) + " --image-size 0x5", 2,
       "--image-size: '0x5' is not HxW"},
      {"a --val-split of 1", good_folder, std::string(kFolder) + " --val-split 1", 2,
       "--val-split: 1 is not a fraction in [0, 1)"},
      {"--image-size with CIFAR-10", good_cifar, std::string(kCifar) + " --image-size 64", 2,
       "--image-size is for --dataset folder, not cifar10"},
      {"IDX wrong magic", [](const fs::path& d) {
         fashion_dir(d / "fm");
         mgpu::testing::write_gz(d / "fm" / "train-labels-idx1-ubyte.gz", {0, 0, 0x0D, 1, 0, 0, 0, 1, 0});
       }, kFashion, 2, "train-labels-idx1-ubyte.gz"},
      {"IDX wrong dimensions", [](const fs::path& d) {
         fashion_dir(d / "fm");
         mgpu::testing::write_gz(d / "fm" / "t10k-images-idx3-ubyte.gz",
                                 mgpu::testing::idx_bytes({16, 784}, std::vector<uint8_t>(16 * 784)));
       }, kFashion, 2, "t10k-images-idx3-ubyte.gz"},
      {"IDX truncated", [](const fs::path& d) {
         fashion_dir(d / "fm");
         auto bytes = mgpu::testing::idx_bytes({16, 28, 28}, std::vector<uint8_t>(16 * 784));
         bytes.resize(bytes.size() - 1);
         mgpu::testing::write_gz(d / "fm" / "train-images-idx3-ubyte.gz", bytes);
       }, kFashion, 2, "train-images-idx3-ubyte.gz"},
      {"IDX counts disagree", [](const fs::path& d) {
         fashion_dir(d / "fm");
         mgpu::testing::write_gz(d / "fm" / "train-labels-idx1-ubyte.gz",
                                 mgpu::testing::idx_bytes({15}, std::vector<uint8_t>(15)));
       }, kFashion, 2, "train-labels-idx1-ubyte.gz"},
      // Checkpoints.
      {"checkpoint truncated", [](const fs::path& d) {
         cifar_with_checkpoint(d, [](const fs::path& f) { resize(f, -static_cast<int64_t>(fs::file_size(f) / 3)); });
       }, std::string(kCifar) + " --resume {d}/x.pt", 2, "checkpoint {d}/x.pt cannot be read"},
      {"checkpoint cut by five bytes", [](const fs::path& d) {
         cifar_with_checkpoint(d, [](const fs::path& f) { resize(f, -5); });
       }, std::string(kCifar) + " --resume {d}/x.pt", 2,
       "checkpoint {d}/x.pt is damaged: it does not end with the checksum mgpu writes"},
      {"a fresh run into a directory holding another run's checkpoints", [](const fs::path& d) {
         good_cifar(d);
         fs::create_directories(d / "old" / "checkpoints");
         fs::copy_file(donor() / "checkpoints" / "ckpt-e0001-s000000.pt",
                       d / "old" / "checkpoints" / "ckpt-e0001-s000000.pt");
       }, std::string(kCifar) + " --out-dir {d}/old", 2,
       "--out-dir {d}/old holds the checkpoints of an earlier run (ckpt-e0001-s000000.pt): "
       "continue that run with --resume auto"},
      {"checkpoint corrupted", [](const fs::path& d) {
         cifar_with_checkpoint(d, [](const fs::path& f) {
           for (int64_t at = 4096; at < 4096 + 64; ++at) poke(f, at, 'X');
         });
       }, std::string(kCifar) + " --resume {d}/x.pt", 2, "{d}/x.pt"},
      {"checkpoint of another run", [](const fs::path& d) { cifar_with_checkpoint(d, [](const fs::path&) {}); },
       std::string(kCifar) + " --epochs 2 --resume {d}/x.pt", 2,
       "epochs: the checkpoint has 1, this run 2"},
      {"checkpoint resumed with another --amp", [](const fs::path& d) { cifar_with_checkpoint(d, [](const fs::path&) {}); },
       std::string(kCifar) + " --amp bf16 --resume {d}/x.pt", 2,
       "amp: the checkpoint has \"off\", this run \"bf16\""},
      {"checkpoint resumed with the fused optimizer", [](const fs::path& d) { cifar_with_checkpoint(d, [](const fs::path&) {}); },
       std::string(kCifar) + " --fused-sgd --resume {d}/x.pt", 2,
       "optimizer: the checkpoint has \"sgd\", this run \"fused-sgd\""},
      {"weights file instead of a checkpoint", [](const fs::path& d) {
         good_cifar(d);
         fs::copy_file(donor() / "model.pt", d / "x.pt");
       }, std::string(kCifar) + " --resume {d}/x.pt", 2, "{d}/x.pt is not an mgpu checkpoint"},
      {"no such checkpoint", good_cifar, std::string(kCifar) + " --resume {d}/nothing.pt", 2,
       "--resume {d}/nothing.pt: no such checkpoint file"},
      // Output paths.
      {"out-dir under a file", [](const fs::path& d) { good_cifar(d); std::ofstream(d / "file") << "x"; },
       std::string(kCifar) + " --out-dir {d}/file/run", 2, "--out-dir {d}/file/run"},
      {"out-dir where nothing can be made", good_cifar, std::string(kCifar) + " --out-dir /proc/mgpu-run",
       2, "--out-dir /proc/mgpu-run"},
      {"plot under a file", [](const fs::path& d) { good_cifar(d); std::ofstream(d / "file") << "x"; },
       std::string(kCifar) + " --output {d}/file/plot.png", 2, "--output {d}/file"},
      {"plot into a directory", [](const fs::path& d) {
         good_cifar(d);
         fs::create_directories(d / "adir");
       },
       std::string(kCifar) + " --output {d}/adir", 2,
       "--output {d}/adir: expected a file name such as plot.png (that is a directory)"},
      {"disk full (a 2 MB file-size limit)", good_cifar, kCifar, 1, "cannot write checkpoint",
       "ulimit -f 2048; "},
      // Weights files, images and export targets.
      {"unknown model", good_cifar, std::string(kCifar) + " --model resnet1000", 2,
       "unknown model 'resnet1000' (known: minigooglenet, resnet20"},
      {"no such weights file", [](const fs::path&) {}, "evaluate --gpus 0 --weights {d}/none.pt", 2,
       "cannot open weights file {d}/none.pt"},
      {"a checkpoint given as weights", [](const fs::path& d) {
         fs::copy_file(donor() / "checkpoints" / "ckpt-e0001-s000000.pt", d / "w.pt");
       }, "predict --gpus 0 --weights {d}/w.pt {d}/w.pt", 2, "{d}/w.pt is not an mgpu weights file"},
      {"an export's state_dict given as weights", [](const fs::path& d) {
         const std::string cmd = std::string(mgpu::testing::kMgpuBinary) + " export --weights " +
                                 (donor() / "model.pt").string() + " --to " +
                                 (d / "net.pt").string() + " > /dev/null 2>&1";
         ASSERT_EQ(std::system(cmd.c_str()), 0);
       }, "evaluate --gpus 0 --weights {d}/net.pt", 2,
       "{d}/net.pt was written by torch.save (as `mgpu export`'s state_dict is), not an mgpu "
       "weights file (a run's model.pt, or the run directory)"},
      {"weights truncated", [](const fs::path& d) {
         fs::copy_file(donor() / "model.pt", d / "w.pt");
         resize(d / "w.pt", -static_cast<int64_t>(fs::file_size(d / "w.pt") / 2));
       }, "export --weights {d}/w.pt --to {d}/out.pt", 2, "weights file {d}/w.pt cannot be read"},
      {"weights corrupted", [](const fs::path& d) {
         fs::copy_file(donor() / "model.pt", d / "w.pt");
         for (int64_t at = 5000; at < 5000 + 32; ++at) poke(d / "w.pt", at, 'X');
       }, "export --weights {d}/w.pt --to {d}/out.pt", 2, "weights file {d}/w.pt is damaged"},
      {"weights and data that do not fit", [](const fs::path& d) {
         fashion_dir(d / "fm");
         fs::copy_file(donor() / "model.pt", d / "w.pt");
       }, "evaluate --gpus 0 --weights {d}/w.pt --dataset fashion-mnist --data-dir {d}/fm", 2,
       "does not fit the weights in {d}/w.pt"},
      {"evaluation out-dir under a file", [](const fs::path& d) {
         good_cifar(d);
         std::ofstream(d / "file") << "x";
       }, "evaluate --gpus 0 --weights " + (donor() / "model.pt").string() +
              " --data-dir {d}/data --no-download --out-dir {d}/file/eval", 2, "--out-dir {d}/file/eval"},
      {"evaluate a folder without --data-dir, into a new --out-dir", [](const fs::path&) {},
       "evaluate --gpus 0 --weights " + (donor() / "model.pt").string() +
           " --dataset folder --out-dir {d}/run/eval/deeper", 2,
       "--dataset folder needs --data-dir"},
      {"evaluate data that does not fit the weights, into a new --out-dir", [](const fs::path& d) {
         fashion_dir(d / "fm");
       }, "evaluate --gpus 0 --weights " + (donor() / "model.pt").string() +
              " --dataset fashion-mnist --data-dir {d}/fm --out-dir {d}/run/eval", 2,
       "does not fit the weights"},
      {"export damaged weights into a new folder", [](const fs::path& d) {
         fs::copy_file(donor() / "model.pt", d / "w.pt");
         for (int64_t at = 5000; at < 5000 + 32; ++at) poke(d / "w.pt", at, 'X');
       }, "export --weights {d}/w.pt --to {d}/run/exported/model.pt", 2,
       "weights file {d}/w.pt is damaged"},
      {"an image that is not one", [](const fs::path& d) { std::ofstream(d / "cat.png") << "meow"; },
       "predict --gpus 0 --weights " + (donor() / "model.pt").string() + " {d}/cat.png", 2,
       "image {d}/cat.png cannot be decoded"},
      {"no such image", [](const fs::path&) {},
       "predict --gpus 0 --weights " + (donor() / "model.pt").string() + " {d}/none.jpg", 2,
       "cannot open image {d}/none.jpg"},
      {"a directory given as an image", [](const fs::path&) {},
       "predict --gpus 0 --weights " + (donor() / "model.pt").string() + " {d}", 2,
       "image {d}: expected a file, found a directory"},
      {"a directory given as a history", [](const fs::path&) {}, "plot {d} --output {d}/p.png", 2,
       "history file {d}: expected a file, found a directory"},
      {"a plot redrawn into a directory", [](const fs::path&) {},
       "plot " + (donor() / "history.csv").string() + " --output {d}", 2,
       "--output {d}: expected a file name such as plot.png"},
      {"predict without images", [](const fs::path&) {},
       "predict --gpus 0 --weights " + (donor() / "model.pt").string(), 2,
       "name one or more image files"},
      {"export under a file", [](const fs::path& d) { std::ofstream(d / "file") << "x"; },
       "export --weights " + (donor() / "model.pt").string() + " --to {d}/file/model.pt", 2,
       "--to {d}/file"},
      // Devices and flags.
      {"more GPUs than exist", good_cifar, std::string(kCifar) + " --gpus 64", 2,
       "--gpus 64 asks for 64 GPU(s)"},
      {"threads beyond reason", good_cifar, std::string(kCifar) + " --threads 100000", 2,
       "--threads 100000: expected an integer from 0 to 1024"},
      {"a huge batch", good_cifar, std::string(kCifar) + " --batch-per-device 9999999999", 2,
       "--batch-per-device 9999999999"},
      {"a rate beyond float32", good_cifar, std::string(kCifar) + " --lr 1e39", 2,
       "--lr 1e+39: expected a number > 0 and at most 3.4028235e+38"},
      {"a rate scaled beyond float32", good_cifar,
       std::string(kCifar) + " --lr 1e38 --lr-scaling linear --accumulate 8", 2,
       "--lr 1e+38 with --lr-scaling linear gives a rate of 8e+38"},
      {"fewer images than one batch", good_cifar, std::string(kCifar) + " --limit-train 8", 2,
       "fewer than one global batch of 16"},
      {"a timeout that would overflow", good_cifar, std::string(kCifar) + " --comm-timeout 1e300", 2,
       "--comm-timeout 1e+300"},
      {"bench with absurd counts", [](const fs::path&) {}, "bench --gpus 1,100000", 2,
       "--gpus '1,100000'"},
      {"an unknown test-time augmentation", good_cifar, std::string(kCifar) + " --tta sideways", 2,
       "--tta 'sideways': expected none, mirror or mirror-translate"},
      {"a switch given a value it cannot take", good_cifar, std::string(kCifar) + " --nesterov=no",
       2, "--nesterov=no: a switch takes no value, or true or false"},
      {"a profiler trace without GPUs", [](const fs::path&) {}, "bench --trace", 2,
       "--trace records the GPU's kernels"},
      {"a reflected shift as wide as the image", good_cifar,
       std::string(kCifar) + " --translate 32", 2,
       "--translate 32: the images are 32x32, and a shift with reflected borders must be smaller "
       "than the image (at most 31)"},
      {"a lookahead that never averages before the end", good_cifar,
       std::string(kCifar) + " --limit-train 64 --lookahead 4", 2,
       "--lookahead 4: this run has 4 steps (4 an epoch)"},
      {"a parameter group for part of an epoch", good_cifar,
       std::string(kCifar) + " --param-group conv:epochs=1.5", 2,
       "'epochs=1.5': epochs takes a whole number of epochs"},
      {"CPU replicas in each process of a launched job, refused before waiting for peers",
       good_cifar, std::string(kCifar) + " --cpu-replicas 2 --comm-timeout 5", 2,
       "RANK/WORLD_SIZE started 2 processes: on the CPU each drives one replica, so use "
       "--cpu-replicas 1",
       "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29598 "},
      {"a malformed simulated link", good_cifar, std::string(kCifar) + " --cpu-replicas 2", 2,
       "MGPU_SIM_LINK 'fast': expected GBPS,LATENCY_US", "MGPU_SIM_LINK=fast "},
  };
}

}  // namespace

TEST(BadInputs, EveryOneIsAClearErrorWithNothingHalfWritten) {
  for (const auto& c : corpus()) {
    TempDir tmp;
    c.setup(tmp.path());
    const std::string cmd =
        fmt::format("{}{} {} > /dev/null 2> {}", c.shell_prefix, mgpu::testing::kMgpuBinary,
                    expand(c.args, tmp.path()), (tmp.path() / "stderr").string());
    const int status = std::system(fmt::format("bash -c '{}'", cmd).c_str());
    const std::string err = read_text(tmp.path() / "stderr");
    ASSERT_TRUE(WIFEXITED(status)) << c.name;
    EXPECT_EQ(WEXITSTATUS(status), c.code) << c.name << ": " << err;
    EXPECT_NE(err.find("mgpu: error: "), std::string::npos) << c.name << ": " << err;
    EXPECT_NE(err.find(expand(c.message, tmp.path())), std::string::npos) << c.name << ": " << err;
    EXPECT_EQ(leftovers(tmp.path()), std::vector<std::string>{}) << c.name;
    EXPECT_FALSE(fs::exists(tmp.path() / "run" / "model.pt")) << c.name;
    if (c.code == 2) {  // a refused command leaves no directory it made
      EXPECT_FALSE(fs::exists(tmp.path() / "run")) << c.name;
    }
    // A data set that failed to load leaves no image cache.
    for (fs::recursive_directory_iterator it(tmp.path()), end; it != end; ++it) {
      EXPECT_NE(it->path().filename().string().rfind(".mgpu-cache", 0), 0u)
          << c.name << ": " << it->path();
    }
  }
}

TEST(BadInputs, EveryNumericFlagRefusesValuesOfTheWrongKind) {
  // Integers: not a number, negative, non-finite, beyond int64.
  const std::vector<std::string> int_flags = {"batch-per-device", "cpu-replicas", "accumulate",
                                              "threads", "seed", "limit-train", "limit-test",
                                              "verbose", "checkpoint-every", "keep", "gpus",
                                              "lookahead", "translate"};
  const std::vector<std::string> bad_ints = {"abc", "-1", "nan", "inf", "1.5", "",
                                             "99999999999999999999"};
  // Reals: not a number, negative, non-finite, beyond double.
  // (--epochs is a real: a fraction ends the run part way through its last epoch.)
  const std::vector<std::string> real_flags = {"epochs", "lr", "power", "momentum",
                                               "warmup-epochs", "comm-timeout", "weight-decay",
                                               "label-smoothing", "clip-grad-norm", "gamma",
                                               "bucket-mb", "lookahead-decay"};
  const std::vector<std::string> bad_reals = {"abc", "-1", "nan", "inf", "-inf", "1e400", "2x"};
  auto refused = [](const std::string& flag, const std::string& value) {
    std::vector<std::string> args = {"mgpu", "train", "--gpus", "0", "--" + flag, value};
    // --gamma and --milestones mean something only with --schedule step.
    if (flag == "gamma") args.insert(args.end(), {"--schedule", "step", "--milestones", "1"});
    if (flag == "milestones") args.insert(args.end(), {"--schedule", "step"});
    if (flag == "lookahead-decay") args.insert(args.end(), {"--lookahead", "5"});
    try {
      mgpu::app::parse_command_line(args);
    } catch (const mgpu::data::InputError& e) {
      return std::string(e.what()).find("--" + flag) != std::string::npos;
    }
    return false;
  };
  for (const auto& flag : int_flags) {
    for (const auto& value : bad_ints) EXPECT_TRUE(refused(flag, value)) << flag << " " << value;
  }
  for (const auto& flag : real_flags) {
    for (const auto& value : bad_reals) EXPECT_TRUE(refused(flag, value)) << flag << " " << value;
  }
  for (const auto& value : {"abc", "-1", "0", "1.5", "", "99999999999999999999", "2,1", "1,,2"}) {
    EXPECT_TRUE(refused("milestones", value)) << value;
  }
  // Zero where zero means nothing to do or a division by zero.
  for (const std::string flag : {"epochs", "batch-per-device", "cpu-replicas", "accumulate", "lr",
                                 "comm-timeout", "gamma", "bucket-mb"}) {
    EXPECT_TRUE(refused(flag, "0")) << flag;
  }
}
