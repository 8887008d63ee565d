// Every registered model, whatever it is: the registry finds and lists it, it takes the input
// shapes of both data sets, every parameter learns, it clones onto a device, it trains,
// replicas agree with accumulation, and it survives checkpoints, weights files and export's
// naming. A new model line in models/Models.def is tested here with no other change.
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "Fixtures.h"
#include "data/Preprocess.h"
#include "models/Registry.h"
#include "app/commands/Export.h"
#include "train/Trainer.h"
#include "train/files/Weights.h"

using namespace mgpu;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;

namespace {

// 3x32x32 images of two classes, horizontal or vertical stripes 4 pixels wide, over noise:
// texture that any convolutional network can tell apart, wherever it pools.
data::Dataset registry_stripes(int64_t n, uint64_t seed) {
  return mgpu::testing::pattern_dataset(n, seed, {/*classes=*/2, 3, 32, /*width=*/4, 60});
}

train::TrainConfig registry_config(int64_t epochs) {
  train::TrainConfig c;
  c.batch_per_device = 8;
  c.eval_batch = 32;
  c.epochs = epochs;
  c.verbose = 0;
  c.seed = 3;
  return c;
}

// A model without dropout, so that replicas and accumulation draw nothing at random.
torch::nn::AnyModule without_dropout(const std::string& name, const models::ModelShape& shape) {
  torch::manual_seed(11);
  auto model = models::make_model(name, shape);
  for (auto& m : model.ptr()->modules()) {
    if (auto* dropout = m->as<torch::nn::Dropout>()) dropout->options.p(0.0);
  }
  return model;
}

// Largest difference between same-named tensors: every parameter and buffer, or only the
// parameters.
double max_difference(torch::nn::Module& a, torch::nn::Module& b, bool buffers = true) {
  auto sa = app::state_dict(a), sb = app::state_dict(b);
  if (!buffers) {
    auto only_parameters = [](torch::nn::Module& m, decltype(sa)& entries) {
      const auto params = m.named_parameters();
      entries.erase(std::remove_if(entries.begin(), entries.end(),
                                   [&](const auto& e) { return !params.contains(e.first); }),
                    entries.end());
    };
    only_parameters(a, sa);
    only_parameters(b, sb);
  }
  EXPECT_EQ(sa.size(), sb.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(sa.size(), sb.size()); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    worst = std::max(worst, (sa[i].second.to(torch::kFloat64) - sb[i].second.to(torch::kFloat64))
                                .abs()
                                .max()
                                .item<double>());
  }
  return worst;
}

}  // namespace

class EveryModel : public ::testing::TestWithParam<std::string> {
 protected:
  // One thread: ctest runs two tests at once on two cores, and oversubscribed OpenMP threads
  // slow LibTorch down tenfold.
  void SetUp() override { torch::set_num_threads(1); }
};

TEST(Registry, UnknownNamesAreRefusedWithTheKnownOnes) {
  const std::string message = mgpu::testing::error_of([] { models::find_model("resnet1000"); });
  EXPECT_NE(message.find("unknown model 'resnet1000'"), std::string::npos) << message;
  for (const auto& name : models::model_names())
    EXPECT_NE(message.find(name), std::string::npos) << name;
  EXPECT_EQ(models::registered_models().front().name, "minigooglenet");  // the default first
}

TEST(Registry, NamesAreUniqueAndDescribed) {
  std::set<std::string> seen;
  for (const auto& entry : models::registered_models()) {
    EXPECT_TRUE(seen.insert(entry.name).second) << entry.name << " twice";
    EXPECT_FALSE(entry.description.empty()) << entry.name;
    EXPECT_EQ(entry.name.find(' '), std::string::npos) << entry.name;
  }
}

TEST_P(EveryModel, IsListedWithItsParameterCount) {
  const auto model = models::make_model(GetParam(), {});
  const auto table = models::models_table({});
  const auto line =
      fmt::format("{:<16} {:>12}", GetParam(), models::count_parameters(*model.ptr()));
  EXPECT_NE(table.find(line), std::string::npos) << table;
  const auto& recipe = models::find_model(GetParam()).recipe;
  if (!recipe.empty()) {  // and the recipe it trains with, word for word
    EXPECT_NE(table.find("recipe: " + fmt::format("{}", fmt::join(recipe, " "))),
              std::string::npos)
        << table;
  }
}

TEST_P(EveryModel, MapsBothDataSetsShapesToLogits) {
  for (const models::ModelShape shape :
       {models::ModelShape{3, 32, 32, 10}, models::ModelShape{1, 28, 28, 10},
        models::ModelShape{3, 36, 40, 7}}) {
    auto model = models::make_model(GetParam(), shape);
    model.ptr()->eval();
    const auto out = model.forward(torch::randn({2, shape.channels, shape.height, shape.width}));
    EXPECT_EQ(out.sizes(), (torch::IntArrayRef{2, shape.classes}))
        << shape.channels << "x" << shape.height << "x" << shape.width;
    EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  }
}

TEST_P(EveryModel, EveryParameterReceivesAGradient) {
  // A trainable parameter that never gets a gradient would sit in the flat all-reduce buffer
  // for nothing and, worse, means part of the model is disconnected. A frozen one (airbench94's
  // whitening filters and batch-norm scales) gets none.
  auto model = models::make_model(GetParam(), {});
  model.ptr()->train();
  const auto logits = model.forward(torch::randn({4, 3, 32, 32}));
  torch::nn::functional::cross_entropy(logits, torch::tensor({0, 1, 2, 3})).backward();
  for (const auto& p : model.ptr()->named_parameters()) {
    if (!p.value().requires_grad()) {
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
      continue;
    }
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
}

TEST_P(EveryModel, ReplicasKeepTheFrozenParametersFrozen) {
  // clone() rebuilds each submodule from its own reset(), which knows nothing of a parameter
  // its parent froze: the trainer gives every replica replica 0's choice.
  const auto d = registry_stripes(16, 2);
  auto c = registry_config(1);
  auto model = without_dropout(GetParam(), {});
  const auto params = model.ptr()->parameters();
  if (!params.empty()) params.front().requires_grad_(false);  // frozen here, whatever the model
  const auto before = params.front().detach().clone();
  train::Trainer trainer(c, model, std::vector<torch::Device>(2, torch::kCPU),
                         data::mean_image(d.images));
  std::ostringstream out;
  train::Progress quiet(0, out);
  trainer.fit(d, d, quiet);
  for (int r = 0; r < 2; ++r) {
    const auto mine = trainer.model(r).ptr()->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(mine[i].requires_grad(), params[i].requires_grad()) << "replica " << r << " " << i;
    }
    EXPECT_TRUE(torch::equal(mine.front(), before)) << "replica " << r << " trained a frozen one";
  }
}

TEST_P(EveryModel, ClonesIntoAnIndependentCopy) {
  auto model = without_dropout(GetParam(), {});
  model.ptr()->eval();
  auto copy = model.clone(torch::kCPU);
  const auto x = torch::randn({2, 3, 32, 32});
  EXPECT_TRUE(torch::equal(model.forward(x), copy.forward(x)));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : copy.ptr()->parameters()) p.add_(1.0);
  }
  EXPECT_FALSE(torch::equal(model.forward(x), copy.forward(x))) << "the copy shares storage";
}

TEST_P(EveryModel, ClonesOntoAGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto model = without_dropout(GetParam(), {});
  model.ptr()->eval();
  auto copy = model.clone(torch::Device(torch::kCUDA, 0));
  for (const auto& p : copy.ptr()->parameters()) EXPECT_TRUE(p.is_cuda());
  const auto x = torch::randn({2, 3, 32, 32});
  EXPECT_TRUE(torch::allclose(model.forward(x), copy.forward(x.cuda()).cpu(), 1e-4, 1e-4));
}

TEST_P(EveryModel, TrainingLowersTheLossAndLearnsAnEasyTask) {
  const auto d = registry_stripes(64, 1);
  auto c = registry_config(6);
  c.lr = 0.01;
  torch::manual_seed(3);
  train::Trainer trainer(c, models::make_model(GetParam(), {}), torch::kCPU,
                         data::mean_image(d.images));
  std::ostringstream out;
  train::Progress quiet(0, out);
  const auto history = trainer.fit(d, registry_stripes(64, 2), quiet);
  EXPECT_LT(history.back().loss, history.front().loss);
  // Accuracy while training (batch-norm statistics after 48 steps are too young for eval mode).
  EXPECT_GE(history.back().acc, 0.7) << "training accuracy on two obvious classes";
}

TEST_P(EveryModel, TwoReplicasEqualOneAccumulatingTwo) {
  const auto d = registry_stripes(32, 4);  // global batch 16: 2 steps
  auto run = [&](int replicas, int64_t accumulate) {
    auto c = registry_config(1);
    c.accumulate = accumulate;
    std::vector<torch::Device> devices(static_cast<size_t>(replicas), torch::kCPU);
    train::Trainer trainer(c, without_dropout(GetParam(), {}), devices, data::mean_image(d.images));
    std::ostringstream out;
    train::Progress quiet(0, out);
    trainer.fit(d, d.first(8), quiet);
    return trainer.model(0).clone(torch::kCPU);
  };
  // The weights agree; batch-norm statistics do not and need not: replicas each update theirs
  // once per step and average them before evaluation, accumulation updates one twice.
  auto replicas = run(2, 1), accumulated = run(1, 2), plain = run(1, 1);
  EXPECT_LT(max_difference(*replicas.ptr(), *accumulated.ptr(), /*buffers=*/false), 1e-5);
  EXPECT_GT(max_difference(*replicas.ptr(), *plain.ptr(), /*buffers=*/false), 1e-3)
      << "the test can tell runs apart";
}

TEST_P(EveryModel, ACheckpointAndResumeEndAsTheUninterruptedRun) {
  const auto d = registry_stripes(32, 5);
  TempDir tmp;
  std::ostringstream out;
  train::Progress quiet(0, out);
  auto make = [&](int64_t epochs, const fs::path& dir) {  // as run_training makes one
    torch::manual_seed(3);
    auto trainer =
        std::make_unique<train::Trainer>(registry_config(epochs), models::make_model(GetParam(), {}),
                                         torch::kCPU, data::mean_image(d.images));
    train::CheckpointPolicy policy;
    policy.dir = dir;
    policy.fingerprint = R"({"model": ")" + GetParam() + R"("})";
    trainer->set_checkpoints(policy);
    return trainer;
  };
  auto whole = make(2, tmp.path() / "whole");
  whole->fit(d, d, quiet);
  // Its checkpoint after epoch 1 (kept: --keep 1 leaves one older than the newest), resumed
  // by a fresh trainer, must end where the whole run ended.
  auto resumed = make(2, tmp.path() / "resumed");
  resumed->resume(train::checkpoint_path(tmp.path() / "whole", 1, 0));
  resumed->fit(d, d, quiet);
  EXPECT_EQ(max_difference(*resumed->model().ptr(), *whole->model().ptr()), 0.0);
}

TEST_P(EveryModel, AWeightsFileRoundTripsAndNamesEveryTensorOnce) {
  TempDir tmp;
  const models::ModelShape shape{1, 28, 28, 3};
  train::Weights w{GetParam(),
                   shape,
                   "fashion-mnist",
                   {"a", "b", "c"},
                   torch::rand({1, 28, 28}) * 255,
                   without_dropout(GetParam(), shape)};
  {
    // Move the batch-norm statistics away from their initial values.
    torch::NoGradGuard no_grad;
    w.module.ptr()->train();
    w.module.forward(torch::randn({4, 1, 28, 28}) * 3 + 1);
  }
  train::save_weights(w, tmp.path() / "w.pt");
  auto back = train::load_weights(tmp.path() / "w.pt", torch::kCPU);
  EXPECT_EQ(back.model, GetParam());
  EXPECT_EQ(back.class_names, w.class_names);
  EXPECT_TRUE(torch::equal(back.mean, w.mean));
  EXPECT_EQ(max_difference(*back.module.ptr(), *w.module.ptr()), 0.0);
  w.module.ptr()->eval();
  const auto x = torch::randn({2, 1, 28, 28});
  EXPECT_TRUE(torch::equal(back.module.forward(x), w.module.forward(x)));

  // state_dict covers every parameter and buffer exactly once, under unique names.
  const auto entries = app::state_dict(*w.module.ptr());
  std::set<std::string> names;
  for (const auto& [name, tensor] : entries) EXPECT_TRUE(names.insert(name).second) << name;
  EXPECT_EQ(entries.size(), w.module.ptr()->parameters().size() + w.module.ptr()->buffers().size());
}

INSTANTIATE_TEST_SUITE_P(Models, EveryModel, ::testing::ValuesIn(models::model_names()),
                         [](const auto& info) { return info.param; });

TEST(Weights, WeightsThatDoNotFitTheirDescriptionAreRefusedByName) {
  // LibTorch's loader would silently take a tensor of another shape; load_weights compares.
  TempDir tmp;
  const models::ModelShape ten{3, 32, 32, 10};
  std::vector<std::string> names(10, "c");
  train::Weights w{"resnet20",
                   ten,
                   "cifar10",
                   names,
                   torch::zeros({3, 32, 32}),
                   models::make_model("resnet20", {3, 32, 32, 5})};  // 5 classes inside
  train::save_weights(w, tmp.path() / "w.pt");
  const auto error =
      mgpu::testing::error_of([&] { train::load_weights(tmp.path() / "w.pt", torch::kCPU); });
  EXPECT_NE(error.find("weights file " + (tmp.path() / "w.pt").string() +
                       ": its weights do not fit the resnet20 model: linear.weight is [5, 64]"),
            std::string::npos)
      << error;

  w.module = models::make_model("resnet20", ten);
  w.model = "no-such-model";
  train::save_weights(w, tmp.path() / "x.pt");
  EXPECT_NE(mgpu::testing::error_of([&] {
              train::load_weights(tmp.path() / "x.pt", torch::kCPU);
            }).find("unknown model 'no-such-model'"),
            std::string::npos);
}
