// The recipe flags on the command line: read, given way to by a model's recipe, refused when
// they cannot mean anything; and the binary records every setting in summary.json and refuses
// to resume a checkpoint with another value.
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

#include "Fixtures.h"
#include "app/Cli.h"
#include "app/commands/RecipeFlags.h"
#include "data/InputError.h"

using namespace mgpu;
using mgpu::testing::TempDir;

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
