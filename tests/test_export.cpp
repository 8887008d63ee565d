// mgpu export, checked from Python: for every registered model, the exported state_dict is
// loaded by Python's torch.load and compared, tensor by tensor and by one forward pass of the
// PyTorch port (python/mgpu_models.py), with what the C++ side holds (tests/check_export.py).
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "Fixtures.h"
#include "models/Registry.h"
#include "app/commands/Export.h"
#include "train/files/Weights.h"

using namespace mgpu;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;

namespace {

// Raw bytes of t in dir/file, and its index entry: no pickle between C++ and the checker.
nlohmann::json write_raw(const fs::path& dir, const std::string& file, const std::string& name,
                         const torch::Tensor& t) {
  const auto c = t.detach().cpu().contiguous();
  std::ofstream out(dir / file, std::ios::binary);
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
  const std::string dtype = c.dtype() == torch::kFloat32 ? "float32"
                            : c.dtype() == torch::kInt64 ? "int64"
                                                         : "uint8";
  return {{"name", name}, {"file", file}, {"dtype", dtype}, {"shape", c.sizes().vec()}};
}

// Runs check_export.py; its exit code, and its output in *out.
int check_from_python(const fs::path& exported, const fs::path& ref, std::string* out) {
  const fs::path log = ref / "check.log";
  const auto cmd =
      fmt::format("{} {}/tests/check_export.py {} {} > {} 2>&1", mgpu::testing::kPython,
                  mgpu::testing::kSourceDir, exported.string(), ref.string(), log.string());
  const int status = std::system(cmd.c_str());
  std::ifstream in(log);
  *out = std::string{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

class ExportEveryModel : public ::testing::TestWithParam<std::string> {};

TEST_P(ExportEveryModel, PythonLoadsTheSameTensorsAndComputesTheSameLogits) {
  torch::set_num_threads(1);
  TempDir tmp;
  const models::ModelShape shape{3, 32, 32, 10};
  torch::manual_seed(7);
  train::Weights w{
      GetParam(),
      shape,
      "cifar10",
      {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"},
      torch::rand({3, 32, 32}) * 255,
      models::make_model(GetParam(), shape)};
  {
    // Batch-norm statistics away from their initial values, as after training.
    torch::NoGradGuard no_grad;
    w.module.ptr()->train();
    for (int i = 0; i < 3; ++i) w.module.forward(torch::randn({8, 3, 32, 32}) * 20 + 5);
  }
  fs::create_directories(tmp.path() / "run");
  train::save_weights(w, tmp.path() / "run" / "model.pt");

  std::ostringstream printed;
  app::run_export((tmp.path() / "run").string(), (tmp.path() / "out" / "net.pt").string(),
                    printed);
  EXPECT_NE(printed.str().find("net.mean.pt"), std::string::npos) << printed.str();

  // What C++ holds, from the weights file as mgpu would load it.
  auto loaded = train::load_weights(tmp.path() / "run" / "model.pt", torch::kCPU);
  const fs::path ref = tmp.path() / "ref";
  fs::create_directories(ref);
  nlohmann::json index = {{"model", GetParam()}};
  int i = 0;
  for (const auto& [name, tensor] : app::state_dict(*loaded.module.ptr())) {
    index["tensors"].push_back(write_raw(ref, fmt::format("t{}.bin", i++), name, tensor));
  }
  index["mean"] = write_raw(ref, "mean.bin", "mean", loaded.mean);
  const auto images = torch::randint(0, 256, {4, 3, 32, 32}, torch::kUInt8);
  index["images"] = write_raw(ref, "images.bin", "images", images);
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = loaded.module.forward(images.to(torch::kFloat32) - loaded.mean);
  }
  index["logits"] = write_raw(ref, "logits.bin", "logits", logits);
  std::ofstream(ref / "index.json") << index.dump();

  std::string out;
  EXPECT_EQ(check_from_python(tmp.path() / "out" / "net.pt", ref, &out), 0) << out;
  EXPECT_NE(out.find("tensors identical"), std::string::npos) << out;
  // The models mgpu ships have PyTorch ports; a user's new model may not (docs/extending.md).
  const bool shipped =
      GetParam() == "minigooglenet" || GetParam() == "resnet20" || GetParam() == "airbench94";
  const bool ported = out.find("forward pass matches") != std::string::npos;
  EXPECT_TRUE(ported || (!shipped && out.find("no Python port") != std::string::npos)) << out;

  // The checker can fail: one changed byte of a tensor is found, and one changed logit.
  auto first = app::state_dict(*loaded.module.ptr()).front().second.clone();
  first.view(-1)[0] += 1;
  write_raw(ref, "t0.bin", "", first);
  EXPECT_EQ(check_from_python(tmp.path() / "out" / "net.pt", ref, &out), 1) << out;
  EXPECT_NE(out.find("differs from the C++ tensor"), std::string::npos) << out;
  write_raw(ref, "t0.bin", "", app::state_dict(*loaded.module.ptr()).front().second);
  if (ported) {
    auto changed = logits.clone();
    changed[0][0] += 0.5;
    write_raw(ref, "logits.bin", "logits", changed);
    EXPECT_EQ(check_from_python(tmp.path() / "out" / "net.pt", ref, &out), 1) << out;
    EXPECT_NE(out.find("logits differ"), std::string::npos) << out;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, ExportEveryModel, ::testing::ValuesIn(models::model_names()),
                         [](const auto& info) { return info.param; });

TEST(Export, FileNamesFollowTheTarget) {
  const auto files = app::export_files("dir/model.pt");
  EXPECT_EQ(files.state_dict, "dir/model.pt");
  EXPECT_EQ(files.mean, "dir/model.mean.pt");
  EXPECT_EQ(files.about, "dir/model.json");
  EXPECT_EQ(app::export_files("weights").mean, "weights.mean.pt");
}

TEST(Export, ATargetThatIsAFolderOrUnderAFileIsRefused) {
  TempDir tmp;
  std::ostringstream out;
  std::ofstream(tmp.path() / "file") << "x";
  auto error = mgpu::testing::error_of(
      [&] { app::run_export("none", (tmp.path() / "file" / "model.pt").string(), out); });
  EXPECT_NE(error.find("--to " + (tmp.path() / "file").string()), std::string::npos) << error;
  error = mgpu::testing::error_of([&] { app::run_export("none", tmp.path().string(), out); });
  EXPECT_NE(error.find("expected a file name"), std::string::npos) << error;
}
