// The recipe flags beyond the tutorial: each optimizer setting makes torch's SGD and the fused
// step compute the steps written out by hand here (from the same weights and batches), and
// changes where the steps end; the schedules reach the history. Their flags and the binary:
// test_recipe_cli.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <sstream>

#include "Fixtures.h"
#include "data/InputError.h"
#include "data/Preprocess.h"
#include "models/MiniGoogLeNet.h"
#include "train/Device.h"
#include "train/Trainer.h"

using namespace mgpu;
using mgpu::testing::TempDir;
using mgpu::testing::relative_difference;
using mgpu::testing::SmallNet;
using mgpu::testing::stripes;

namespace {

// Larger rates and settings than a real run's, so that every setting moves the weights by far
// more than float rounding does in six steps.
train::TrainConfig knob_config() {
  auto c = mgpu::testing::stripes_config();
  c.lr = 0.02;
  c.augment = false;  // the steps written out take the same images in the same order
  c.shuffle = false;
  return c;
}

SmallNet fresh_net(const train::TrainConfig& c) {
  torch::manual_seed(c.seed);
  return SmallNet();
}

// The trainer's model after `steps` steps.
std::shared_ptr<torch::nn::Module> trained_net(const train::TrainConfig& c, int64_t steps,
                                           torch::nn::AnyModule net,
                                           torch::Device device = torch::kCPU) {
  train::Trainer trainer(c, std::move(net), device, data::mean_image(stripes().images));
  trainer.train_steps(stripes(), steps);
  return trainer.model().ptr();
}

std::shared_ptr<torch::nn::Module> trained_net(const train::TrainConfig& c, int64_t steps) {
  return trained_net(c, steps, torch::nn::AnyModule(fresh_net(c)));
}

// The shipped MiniGoogLeNet, dropout included, for 1-channel images of two classes.
torch::nn::AnyModule shipped_net(const train::TrainConfig& c) {
  torch::manual_seed(c.seed);
  return torch::nn::AnyModule(
      models::MiniGoogLeNet(models::MiniGoogLeNetOptions().in_channels(1).num_classes(2)));
}

// The same steps written out: cross-entropy against (1 - s) one-hot + s / classes, the gradient
// scaled to at most the clipping norm, weight decay added (not to 1-d parameters if so set),
// then SGD with momentum or Nesterov momentum, all as torch.optim.SGD documents them.
// Each parameter group's members by the first pattern in their name; its rate multiplier (0 when
// frozen or its epochs are over: train_steps runs epoch 0) and weight decay.
std::shared_ptr<torch::nn::Module> by_hand(const train::TrainConfig& c, int64_t steps) {
  auto net = fresh_net(c);
  net->train();
  const auto mean = data::mean_image(stripes().images);
  auto named = net->named_parameters();
  auto params = net->parameters();
  std::vector<double> scale(params.size(), 1.0), decay(params.size(), c.weight_decay);
  for (size_t i = 0; i < params.size(); ++i) {
    if (!c.decay_norm_bias && params[i].dim() <= 1) decay[i] = 0;
    for (const auto& g : c.param_groups) {
      if (named[i].key().find(g.pattern) == std::string::npos) continue;
      scale[i] = g.frozen || g.epochs == 0 ? 0.0 : g.lr_scale;
      if (g.weight_decay >= 0) decay[i] = g.weight_decay;
      break;
    }
  }
  // --lookahead: the parameters and the float buffers, and their average.
  std::vector<torch::Tensor> state = params, average;
  for (const auto& b : net->buffers()) {
    if (b.is_floating_point()) state.push_back(b);
  }
  for (const auto& t : state) average.push_back(t.detach().clone());
  std::vector<torch::Tensor> momentum(params.size());
  const int64_t b = c.batch_per_device;
  for (int64_t s = 0; s < steps; ++s) {
    const auto idx = torch::arange(s * b, (s + 1) * b).remainder(stripes().size());
    const auto x = data::subtract_mean(stripes().images.index_select(0, idx), mean);
    const auto y = stripes().labels.index_select(0, idx);
    const auto logits = net->forward(x);
    const auto classes = static_cast<double>(logits.size(1));
    const auto target = torch::one_hot(y, logits.size(1)).to(torch::kFloat) *
                            (1 - c.label_smoothing) + c.label_smoothing / classes;
    const auto per_image = -(target * torch::log_softmax(logits, 1)).sum(1);
    const auto loss = c.loss_reduction == "sum" ? per_image.sum() : per_image.mean();
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    loss.backward();
    torch::NoGradGuard no_grad;
    double squares = 0;
    for (const auto& p : params) squares += p.grad().pow(2).sum().item<double>();
    const double clip =
        c.clip_grad_norm > 0 ? std::min(1.0, c.clip_grad_norm / (std::sqrt(squares) + 1e-6)) : 1.0;
    for (size_t i = 0; i < params.size(); ++i) {
      auto& p = params[i];
      if (scale[i] == 0) continue;  // frozen: in no optimizer group
      auto d = p.grad() * clip + decay[i] * p;
      momentum[i] = momentum[i].defined() ? c.momentum * momentum[i] + d : d.clone();
      p.sub_(c.lr * scale[i] * (c.nesterov ? d + c.momentum * momentum[i] : momentum[i]));
    }
    const int64_t done = s + 1;
    auto look = [&](double keep) {  // the average takes in 1 - keep of the model, and back
      for (size_t i = 0; i < state.size(); ++i) {
        average[i] = keep * average[i] + (1 - keep) * state[i];
        state[i].copy_(average[i]);
      }
    };
    if (c.lookahead > 0 && done % c.lookahead == 0) {
      const double t = static_cast<double>(done) / static_cast<double>(steps);
      look(std::pow(c.lookahead_decay, static_cast<double>(c.lookahead)) * t * t * t);
    }
    if (c.lookahead > 0 && done == steps) look(1.0);
  }
  return net.ptr();
}

}  // namespace

// Named, not anonymous: the tests derive from RecipeSetting (unity builds, -Wsubobject-linkage).
namespace recipe_settings {

struct Setting {
  std::string name;
  std::function<void(train::TrainConfig&)> apply;
};

std::vector<Setting> settings() {
  return {
      {"WeightDecay", [](train::TrainConfig& c) { c.weight_decay = 0.05; }},
      {"WeightDecayWithoutNormsAndBiases",
       [](train::TrainConfig& c) {
         c.weight_decay = 0.05;
         c.decay_norm_bias = false;
       }},
      {"Nesterov", [](train::TrainConfig& c) { c.nesterov = true; }},
      {"LabelSmoothing", [](train::TrainConfig& c) { c.label_smoothing = 0.2; }},
      {"ClipGradNorm", [](train::TrainConfig& c) { c.clip_grad_norm = 0.05; }},
      {"SummedLoss", [](train::TrainConfig& c) { c.loss_reduction = "sum"; }},
      {"ParamGroups",  // airbench's: batch-norm's own rate and decay; a bias trained for 0 epochs
       [](train::TrainConfig& c) {
         c.weight_decay = 0.05;
         c.param_groups = {{"bn.", 8.0, 0.01, -1, false}, {"fc.bias", 1.0, -1, 0, false}};
       }},
      {"FrozenGroup",
       [](train::TrainConfig& c) { c.param_groups = {{"conv.weight", 1, -1, -1, true}}; }},
      {"Lookahead",
       [](train::TrainConfig& c) {
         c.lookahead = 2;
         c.lookahead_decay = 0.9;
       }},
      {"AllAtOnce",
       [](train::TrainConfig& c) {
         c.weight_decay = 0.05;
         c.decay_norm_bias = false;
         c.nesterov = true;
         c.label_smoothing = 0.2;
         c.clip_grad_norm = 0.05;
         c.param_groups = {{"bn.", 8.0, 0.01, -1, false}};
         c.lookahead = 2;
       }},
  };
}

void PrintTo(const Setting& s, std::ostream* os) { *os << s.name; }

class RecipeSetting : public ::testing::TestWithParam<Setting> {};

}  // namespace recipe_settings

using recipe_settings::RecipeSetting;
using recipe_settings::settings;

TEST_P(RecipeSetting, TorchSgdAndTheFusedStepComputeTheStepsWrittenOut) {
  torch::set_num_threads(1);
  auto c = knob_config();
  GetParam().apply(c);
  auto fused = c;
  fused.fused_sgd = true;
  const auto expected = by_hand(c, 6);
  EXPECT_LT(relative_difference(*trained_net(c, 6), *expected), 1e-5);
  EXPECT_LT(relative_difference(*trained_net(fused, 6), *expected), 1e-5);
  // Without the setting the same steps end far away: the two checks above would notice if the
  // trainer ignored it.
  EXPECT_GT(relative_difference(*by_hand(knob_config(), 6), *expected), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Recipe, RecipeSetting, ::testing::ValuesIn(settings()),
                         [](const auto& info) { return info.param.name; });

// The shipped model with dropout and every setting at once: torch's SGD and the fused step agree
// (as for the tutorial's recipe: Speed.TheFusedOptimizerGivesTorchSgdsWeights).
TEST(Recipe, OnTheShippedModelTorchSgdAndTheFusedStepAgreeWithEverySetting) {
  torch::set_num_threads(1);
  auto base = knob_config();
  base.augment = base.shuffle = true;
  auto c = base;
  settings().back().apply(c);
  auto fused = c;
  fused.fused_sgd = true;
  const auto plain_run = trained_net(c, 6, shipped_net(c));
  EXPECT_LT(relative_difference(*plain_run, *trained_net(fused, 6, shipped_net(fused))), 1e-5);
  EXPECT_GT(relative_difference(*plain_run, *trained_net(base, 6, shipped_net(base))), 1e-3);
}

TEST(Recipe, AParameterGroupThatTakesNoParameterIsRefused) {
  // A misspelt pattern would otherwise train the run with the recipe it meant to change.
  auto c = knob_config();
  c.param_groups = {{"bn.", 2.0, -1, -1, false}, {"nrom", 64.0, -1, -1, false}};
  try {
    train::Trainer trainer(c, torch::nn::AnyModule(fresh_net(c)), torch::kCPU,
                           data::mean_image(stripes().images));
    ADD_FAILURE() << "accepted";
  } catch (const data::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--param-group 'nrom': no parameter"), std::string::npos)
        << e.what();
  }
  c.param_groups = {{"bn.", 2.0, -1, -1, false}, {"bn.weight", 1.0, -1, 0, false}};  // taken
  EXPECT_THROW(train::Trainer(c, torch::nn::AnyModule(fresh_net(c)), torch::kCPU,
                              data::mean_image(stripes().images)),
               data::InputError);
}

TEST(Recipe, DecayingNormsAndBiasesOrNotAreDifferentSteps) {
  torch::set_num_threads(1);
  auto all = knob_config();
  all.weight_decay = 0.05;
  auto without = all;
  without.decay_norm_bias = false;
  EXPECT_GT(relative_difference(*by_hand(all, 6), *by_hand(without, 6)), 1e-4);
}

TEST(Recipe, TheHistoryRecordsEachSchedulesRate) {
  torch::set_num_threads(1);
  std::ostringstream out;
  train::Progress quiet(0, out);
  auto c = knob_config();
  c.epochs = 4;
  const std::vector<std::pair<std::string, std::vector<double>>> expected = {
      {"step", {0.02, 0.01, 0.005, 0.005}},  // milestones 1 and 2, gamma 0.5
      {"cosine", {0.02, 0.01 * (1 + std::cos(M_PI / 4)), 0.01, 0.01 * (1 + std::cos(M_PI * 3 / 4))}},
      {"constant", {0.02, 0.02, 0.02, 0.02}},
      {"poly", {0.02, 0.015, 0.01, 0.005}},
      // Knots 0:0.2, 0.2:1, 1:0 at the epochs' first steps, t = 0, 1/4, 1/2, 3/4 of the run.
      {"piecewise", {0.02 * 0.2, 0.02 * (1 - 0.05 / 0.8), 0.02 * (1 - 0.3 / 0.8),
                     0.02 * (1 - 0.55 / 0.8)}},
  };
  c.lr_knots = {{0, 0.2}, {0.2, 1}, {1, 0}};
  for (const auto& [schedule, rates] : expected) {
    c.schedule = schedule;
    c.milestones = {1, 2};
    c.gamma = 0.5;
    train::Trainer trainer(c, shipped_net(c), torch::kCPU, data::mean_image(stripes().images));
    const auto history = trainer.fit(stripes(), stripes().first(8), quiet);
    ASSERT_EQ(history.size(), rates.size());
    for (size_t e = 0; e < rates.size(); ++e) {
      EXPECT_NEAR(history[e].lr, rates[e], 1e-12) << schedule << " epoch " << e + 1;
    }
  }
  // The warm-up ramp, per step, as the steps take it: --accumulate 2 with linear scaling peaks
  // at 0.04 (poly from there), starting from 0.02 and reaching the peak after 2 epochs.
  c.schedule = "poly";
  c.accumulate = 2;
  c.lr_scaling = "linear";
  c.warmup_epochs = 2;
  train::Trainer trainer(c, shipped_net(c), torch::kCPU, data::mean_image(stripes().images));
  const auto history = trainer.fit(stripes(), stripes().first(8), quiet);
  const std::vector<double> warm = {0.04 * 0.5, 0.04 * 0.75 * 0.75, 0.04 * 0.5, 0.04 * 0.25};
  ASSERT_EQ(history.size(), warm.size());
  for (size_t e = 0; e < warm.size(); ++e) {
    EXPECT_NEAR(history[e].lr, warm[e], 1e-12) << "warm-up, epoch " << e + 1;
  }
}

// A run whose step count is not a multiple of --lookahead ends on the average as of its last
// multiple (airbench's final update): here 5 steps, the average taken in at steps 2 and 4.
TEST(Recipe, ARunEndsOnTheLookaheadAverage) {
  torch::set_num_threads(1);
  auto c = knob_config();
  c.lookahead = 2;
  c.lookahead_decay = 0.9;
  const auto net = trained_net(c, 5);
  EXPECT_LT(relative_difference(*net, *by_hand(c, 5)), 1e-5);
  // The last step's weights are not the average: the comparison can tell.
  auto last = c;
  last.lookahead = 0;
  EXPECT_GT(relative_difference(*net, *trained_net(last, 5)), 1e-4);
}

// Every setting inside the captured step: the replays repeat the eager steps.
TEST(RecipeGpu, EverySettingInsideACudaGraphGivesTheEagerSteps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  train::set_deterministic(true);
  auto eager = knob_config();
  settings().back().apply(eager);
  eager.fused_sgd = true;
  auto graphs = eager;
  graphs.cuda_graphs = true;
  const auto a = trained_net(eager, 9, shipped_net(eager), torch::kCUDA);
  const auto b = trained_net(graphs, 9, shipped_net(graphs), torch::kCUDA);
  train::set_deterministic(false);
  EXPECT_LT(relative_difference(*a, *b), 1e-5);
}

// A group trained only in its first epoch (epochs=1) stays as it is after it; under --lookahead
// it still moves with the average after that, as in airbench (README's --param-group row).
TEST(Recipe, AGroupsEpochsEndItsStepsButNotTheLookaheadAverage) {
  torch::set_num_threads(1);
  std::ostringstream out;
  train::Progress quiet(0, out);
  auto c = knob_config();
  c.epochs = 3;
  train::ParamGroup conv;
  conv.pattern = "conv";
  conv.epochs = 1;
  c.param_groups = {conv};
  // 6 steps an epoch; every 4 steps the average takes in the weights of steps 5 and 6 too.
  for (const int64_t lookahead : {0, 4}) {
    c.lookahead = lookahead;
    train::Trainer trainer(c, torch::nn::AnyModule(fresh_net(c)), torch::kCPU,
                           data::mean_image(stripes().images));
    std::vector<torch::Tensor> weights;  // conv.weight after each epoch
    trainer.fit(stripes(), stripes().first(8), quiet, [&](const train::History&) {
      weights.push_back(trainer.model().ptr()->named_parameters()["conv.weight"].detach().clone());
    });
    ASSERT_EQ(weights.size(), 3u);
    const double moved = (weights[2] - weights[0]).abs().max().item<double>();
    if (lookahead == 0) {
      EXPECT_EQ(moved, 0.0) << "trained after its epoch";
    } else {
      EXPECT_GT(moved, 0.0) << "the lookahead's average moves it";
    }
  }
}
