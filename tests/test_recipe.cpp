// The recipe flags beyond the tutorial: each optimizer setting makes torch's SGD and the fused
// step compute the steps written out by hand here (from the same weights and batches), and
// changes where the steps end; the schedules reach the history; the binary records every
// setting in summary.json and refuses to resume a checkpoint with another value.
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "Fixtures.h"
#include "app/Cli.h"
#include "app/commands/RecipeFlags.h"
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
std::shared_ptr<torch::nn::Module> trained(const train::TrainConfig& c, int64_t steps,
                                           torch::nn::AnyModule net,
                                           torch::Device device = torch::kCPU) {
  train::Trainer trainer(c, std::move(net), device, data::mean_image(stripes().images));
  trainer.train_steps(stripes(), steps);
  return trainer.model().ptr();
}

std::shared_ptr<torch::nn::Module> trained(const train::TrainConfig& c, int64_t steps) {
  return trained(c, steps, torch::nn::AnyModule(fresh_net(c)));
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

}  // namespace

TEST_P(RecipeSetting, TorchSgdAndTheFusedStepComputeTheStepsWrittenOut) {
  torch::set_num_threads(1);
  auto c = knob_config();
  GetParam().apply(c);
  auto fused = c;
  fused.fused_sgd = true;
  const auto expected = by_hand(c, 6);
  EXPECT_LT(relative_difference(*trained(c, 6), *expected), 1e-5);
  EXPECT_LT(relative_difference(*trained(fused, 6), *expected), 1e-5);
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
  const auto plain_run = trained(c, 6, shipped_net(c));
  EXPECT_LT(relative_difference(*plain_run, *trained(fused, 6, shipped_net(fused))), 1e-5);
  EXPECT_GT(relative_difference(*plain_run, *trained(base, 6, shipped_net(base))), 1e-3);
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
  const auto net = trained(c, 5);
  EXPECT_LT(relative_difference(*net, *by_hand(c, 5)), 1e-5);
  // The last step's weights are not the average: the comparison can tell.
  auto last = c;
  last.lookahead = 0;
  EXPECT_GT(relative_difference(*net, *trained(last, 5)), 1e-4);
}

TEST(RecipeCli, FlagsAreRead) {
  const auto cmd = mgpu::app::parse_command_line(
      {"mgpu", "train", "--epochs", "164", "--schedule", "step", "--milestones", "82,123",
       "--gamma", "0.2", "--weight-decay", "1e-4", "--no-decay-norm-bias", "--nesterov",
       "--label-smoothing", "0.1", "--clip-grad-norm", "5"});
  const auto& t = cmd.as<train::TrainConfig>();
  EXPECT_EQ(t.schedule, "step");
  EXPECT_EQ(t.milestones, (std::vector<int64_t>{82, 123}));
  EXPECT_DOUBLE_EQ(t.gamma, 0.2);
  EXPECT_DOUBLE_EQ(t.weight_decay, 1e-4);
  EXPECT_FALSE(t.decay_norm_bias);
  EXPECT_TRUE(t.nesterov);
  EXPECT_DOUBLE_EQ(t.label_smoothing, 0.1);
  EXPECT_DOUBLE_EQ(t.clip_grad_norm, 5);
  EXPECT_EQ(mgpu::app::parse_command_line({"mgpu", "train", "--schedule", "cosine"})
                .as<train::TrainConfig>().schedule,
            "cosine");
  const auto knots = mgpu::app::parse_command_line({"mgpu", "train", "--schedule", "piecewise",
                                                    "--lr-knots", "0:0.2,0.2:1,1:0"})
                         .as<train::TrainConfig>()
                         .lr_knots;
  EXPECT_EQ(knots, (std::vector<std::pair<double, double>>{{0, 0.2}, {0.2, 1}, {1, 0}}));
  const auto airbench =
      mgpu::app::parse_command_line(
          {"mgpu", "train", "--epochs", "9.9", "--param-group", "norm:lr=64:wd=0.02",
           "--param-group", "whiten.weight:frozen", "--param-group", "whiten.bias:epochs=3",
           "--loss-reduction", "sum", "--lookahead", "5", "--lookahead-decay", "0.9",
           "--translate", "2", "--flip", "alternating"})
          .as<train::TrainConfig>();
  EXPECT_DOUBLE_EQ(airbench.epochs, 9.9);
  ASSERT_EQ(airbench.param_groups.size(), 3u);
  EXPECT_EQ(airbench.param_groups[0].pattern, "norm");
  EXPECT_DOUBLE_EQ(airbench.param_groups[0].lr_scale, 64);
  EXPECT_DOUBLE_EQ(airbench.param_groups[0].weight_decay, 0.02);
  EXPECT_EQ(airbench.param_groups[0].epochs, -1);
  EXPECT_TRUE(airbench.param_groups[1].frozen);
  EXPECT_EQ(airbench.param_groups[2].epochs, 3);
  EXPECT_DOUBLE_EQ(airbench.param_groups[2].weight_decay, -1);  // the run's
  EXPECT_EQ(airbench.loss_reduction, "sum");
  EXPECT_EQ(airbench.lookahead, 5);
  EXPECT_DOUBLE_EQ(airbench.lookahead_decay, 0.9);
  EXPECT_EQ(airbench.translate, 2);
  EXPECT_EQ(airbench.flip, "alternating");
}

TEST(RecipeCli, AModelsRecipeGivesWayToEveryFlagGivenSwitchesIncluded) {
  // airbench94 with each of its recipe's flags given the tutorial's value trains with the
  // tutorial's recipe (its parameter groups aside): a flag given replaces the recipe's value of
  // it and of the flags that qualify it (--schedule poly drops the recipe's --lr-knots), and a
  // switch the recipe sets is turned off with --switch=false.
  const auto parse = [](std::vector<std::string> args) {
    args.insert(args.begin(), {"mgpu", "train"});
    return mgpu::app::parse_command_line(args).as<train::TrainConfig>();
  };
  const auto tutorial = parse({});
  const auto reset = parse({"--model", "airbench94", "--epochs=70", "--batch-per-device=64",
                            "--lr=0.005", "--nesterov=false", "--weight-decay=0",
                            "--schedule=poly", "--label-smoothing=0", "--loss-reduction=mean",
                            "--lookahead=0", "--translate=0", "--flip=random", "--tta=none",
                            "--amp=off", "--momentum=0.9"});
  auto plain = mgpu::app::recipe_summary(reset), expected = mgpu::app::recipe_summary(tutorial);
  plain.erase("param_groups");
  expected.erase("param_groups");
  EXPECT_EQ(plain, expected);
  EXPECT_EQ(reset.epochs, tutorial.epochs);
  EXPECT_EQ(reset.batch_per_device, tutorial.batch_per_device);
  EXPECT_EQ(reset.lr, tutorial.lr);
  EXPECT_EQ(reset.momentum, tutorial.momentum);
  EXPECT_EQ(reset.amp, tutorial.amp);
  EXPECT_FALSE(parse({"--model", "airbench94", "--nesterov=0"}).nesterov);
  EXPECT_TRUE(parse({"--model", "airbench94"}).nesterov);
  EXPECT_EQ(parse({"--model", "airbench94", "--schedule", "cosine"}).schedule, "cosine");
  // Switches written with a value, as cxxopts reads them, for every command's switches.
  EXPECT_FALSE(parse({"--deterministic=false"}).deterministic);
  EXPECT_TRUE(parse({"--deterministic=true"}).deterministic);
  EXPECT_FALSE(parse({"--gpus", "0", "--channels-last=false"}).channels_last);
  EXPECT_TRUE(parse({"--gpus", "0", "--no-channels-last=false"}).channels_last);
  EXPECT_TRUE(parse({"--no-tf32=0"}).tf32);
  for (const auto& bad : {"--fused-sgd=no", "--nesterov=off", "--deterministic="}) {
    EXPECT_THROW(
        try { parse({bad}); } catch (const data::InputError& e) {
          EXPECT_NE(std::string(e.what()).find(std::string(bad) + ": a switch takes no value"),
                    std::string::npos) << e.what();
          throw;
        },
        data::InputError);
  }
}

TEST(RecipeCli, FlagsRefuseWhatTheyCannotMean) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--schedule", "linear"},
       "--schedule 'linear': expected poly, cosine, step, constant or piecewise"},
      {{"--schedule", "piecewise"}, "--schedule piecewise needs --lr-knots"},
      {{"--lr-knots", "0:1,1:0"}, "--lr-knots belongs to --schedule piecewise, not poly"},
      {{"--schedule", "piecewise", "--lr-knots", "0.1:1,1:0"}, "--lr-knots '0.1:1,1:0': expected"},
      {{"--schedule", "piecewise", "--lr-knots", "0:1,0.5:2,0.4:1,1:0"}, "--lr-knots '0:1,0.5:2"},
      {{"--schedule", "piecewise", "--lr-knots", "0:1,1:x"}, "--lr-knots '0:1,1:x'"},
      {{"--schedule", "piecewise", "--lr-knots", "0:-1,1:0"}, "--lr-knots '0:-1,1:0'"},
      {{"--schedule", "piecewise", "--lr-knots", "0:1,1:0,"}, "--lr-knots '0:1,1:0,'"},
      {{"--schedule", "piecewise", "--lr-knots", "0:1"}, "--lr-knots '0:1'"},
      {{"--schedule", "piecewise", "--lr-knots", "0:1;1:0"}, "--lr-knots '0:1;1:0'"},
      {{"--schedule", "step"}, "--schedule step needs --milestones"},
      {{"--schedule", "step", "--milestones", "3,2", "--epochs", "5"}, "--milestones '3,2'"},
      {{"--schedule", "step", "--milestones", "70"}, "from 1 to --epochs - 1 (69)"},
      {{"--schedule", "step", "--milestones", "1,x"}, "--milestones '1,x'"},
      {{"--schedule", "step", "--milestones", "1", "--gamma", "0"}, "--gamma 0: expected"},
      {{"--schedule", "step", "--milestones", "1", "--gamma", "2"}, "--gamma 2: expected"},
      {{"--gamma", "0.5"}, "--gamma belongs to --schedule step, not poly"},
      {{"--milestones", "5", "--schedule", "cosine"}, "--milestones belongs to --schedule step"},
      {{"--power", "2", "--schedule", "cosine"}, "--power shapes the poly schedule"},
      {{"--weight-decay", "-1e-4"}, "--weight-decay -0.0001: expected a number from 0 to 1000"},
      {{"--param-group", "norm"}, "--param-group 'norm': a name pattern and at least one"},
      {{"--param-group", ":lr=2"}, "--param-group ':lr=2': a name pattern"},
      {{"--param-group", "norm:lr=-1"}, "--param-group 'norm:lr=-1': 'lr=-1' is not KEY=VALUE"},
      {{"--param-group", "norm:lr="}, "'lr=' is not KEY=VALUE"},
      {{"--param-group", "norm:speed=2"}, "unknown setting 'speed=2'"},
      {{"--param-group", "norm:epochs=1.5"}, "'epochs=1.5': epochs takes a whole number of epochs"},
      {{"--param-group", "norm:lr=2:"}, "--param-group 'norm:lr=2:'"},
      {{"--loss-reduction", "max"}, "--loss-reduction 'max': expected mean or sum"},
      {{"--lookahead", "-1"}, "--lookahead -1: expected an integer from 0"},
      {{"--lookahead-decay", "0.9"}, "--lookahead-decay needs --lookahead N"},
      {{"--lookahead", "5", "--lookahead-decay", "1.5"}, "--lookahead-decay 1.5: expected"},
      {{"--translate", "65"}, "--translate 65: expected an integer from 0 to 64"},
      {{"--flip", "sometimes"}, "--flip 'sometimes': expected random, alternating or none"},
      {{"--epochs", "0.0"}, "--epochs 0.0: expected a number of epochs > 0"},
      {{"--epochs", "nan"}, "--epochs nan: expected"},
      {{"--weight-decay", "nan"}, "--weight-decay nan"},
      {{"--no-decay-norm-bias"}, "--no-decay-norm-bias needs --weight-decay > 0"},
      {{"--nesterov", "--momentum", "0"}, "--nesterov needs --momentum > 0"},
      {{"--label-smoothing", "1"}, "--label-smoothing 1: expected a number in [0, 1)"},
      {{"--label-smoothing", "-0.1"}, "--label-smoothing -0.1"},
      {{"--clip-grad-norm", "-1"}, "--clip-grad-norm -1: expected a norm >= 0"},
      {{"--clip-grad-norm", "inf"}, "--clip-grad-norm inf"},
  };
  for (const auto& [flags, message] : cases) {
    std::vector<std::string> args = {"train", "--gpus", "0"};
    args.insert(args.end(), flags.begin(), flags.end());
    EXPECT_NE(mgpu::testing::refusal(args).find(message), std::string::npos)
        << fmt::format("{}: {}", fmt::join(flags, " "), mgpu::testing::refusal(args));
  }
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
  const auto a = trained(eager, 9, shipped_net(eager), torch::kCUDA);
  const auto b = trained(graphs, 9, shipped_net(graphs), torch::kCUDA);
  train::set_deterministic(false);
  EXPECT_LT(relative_difference(*a, *b), 1e-5);
}

// mgpu train with every setting: summary.json and the history record them, the same command
// resumes, and a resume with any one of them changed is refused and names it.
TEST(RecipeBinary, SettingsAreRecordedAndAResumeWithAnotherValueIsRefused) {
  TempDir tmp;
  const auto data = mgpu::testing::write_cifar_dir(tmp.path() / "data", 16).parent_path();
  const auto out = tmp.path() / "run";
  const std::string common = fmt::format(
      "train --gpus 0 --dataset cifar10 --no-download --data-dir {} --out-dir {} --epochs 3 "
      "--limit-train 16 --limit-test 8 --batch-per-device 8 --threads 1 --verbose 0",
      data.string(), out.string());
  const std::map<std::string, std::string> settings = {
      {"schedule", "--schedule step"}, {"milestones", "--milestones 1"},
      {"gamma", "--gamma 0.5"},        {"weight_decay", "--weight-decay 0.01"},
      {"decay_norm_bias", "--no-decay-norm-bias"}, {"nesterov", "--nesterov"},
      {"label_smoothing", "--label-smoothing 0.1"}, {"clip_grad_norm", "--clip-grad-norm 5"}};
  // The command with some settings replaced ("": left out).
  auto command = [&](const std::map<std::string, std::string>& replaced) {
    std::string line = common;
    for (const auto& [key, flag] : settings) {
      line += " " + (replaced.count(key) ? replaced.at(key) : flag);
    }
    return line;
  };
  const auto first = mgpu::testing::run_mgpu(command({}));
  ASSERT_EQ(first.code, 0) << first.err;
  std::ifstream summary_file(out / "summary.json");
  const auto summary = nlohmann::json::parse(summary_file)["config"];
  EXPECT_EQ(summary["schedule"], "step");
  EXPECT_EQ(summary["milestones"], nlohmann::json::array({1}));
  EXPECT_EQ(summary["gamma"], 0.5);
  EXPECT_EQ(summary["weight_decay"], 0.01);
  EXPECT_EQ(summary["decay_norm_bias"], false);
  EXPECT_EQ(summary["nesterov"], true);
  EXPECT_EQ(summary["label_smoothing"], 0.1);
  EXPECT_EQ(summary["clip_grad_norm"], 5.0);
  EXPECT_EQ(summary["lr_scaling"], "none");  // what shapes the rate, with the defaults too
  EXPECT_EQ(summary["warmup_epochs"], 0.0);
  std::ifstream history(out / "history.csv");
  std::string header, epoch1, epoch2;
  std::getline(history, header);
  std::getline(history, epoch1);
  std::getline(history, epoch2);
  EXPECT_EQ(epoch1.substr(0, 8), "1,0.005,") << epoch1;
  EXPECT_EQ(epoch2.substr(0, 9), "2,0.0025,") << epoch2;

  const auto same = mgpu::testing::run_mgpu(command({}) + " --resume auto");
  EXPECT_EQ(same.code, 0) << same.err;
  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> changes = {
      {"schedule", {{"schedule", "--schedule constant"}, {"milestones", ""}, {"gamma", ""}}},
      {"milestones", {{"milestones", "--milestones 2"}}},
      {"gamma", {{"gamma", "--gamma 0.25"}}},
      {"weight_decay", {{"weight_decay", "--weight-decay 0.02"}}},
      {"decay_norm_bias", {{"decay_norm_bias", ""}}},
      {"nesterov", {{"nesterov", ""}}},
      {"label_smoothing", {{"label_smoothing", "--label-smoothing 0.2"}}},
      {"clip_grad_norm", {{"clip_grad_norm", "--clip-grad-norm 6"}}}};
  for (const auto& [key, replaced] : changes) {
    const auto r = mgpu::testing::run_mgpu(command(replaced) + " --resume auto");
    EXPECT_EQ(r.code, 2) << key << ": " << r.err;
    EXPECT_NE(r.err.find("cannot continue this one"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(key + ": the checkpoint has"), std::string::npos) << key << ": " << r.err;
  }
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
