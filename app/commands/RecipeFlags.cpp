// The flags beyond the tutorial's recipe (app/commands/RecipeFlags.h).
#include "app/commands/RecipeFlags.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <sstream>

#include "app/commands/Flags.h"  // defines: get, number, int_list
#include "data/InputError.h"     // defines: InputError
#include "train/Tta.h"           // defines: parse_tta, tta_name

namespace mgpu::app {

using data::InputError;

namespace {

// "82,123": epochs from 1 to epochs - 1 (epochs: the epochs the run starts), increasing.
std::vector<int64_t> milestone_list(const std::string& text, int64_t epochs) {
  const auto list = int_list(text, 1, epochs - 1);
  if (!list ||
      std::adjacent_find(list->begin(), list->end(), std::greater_equal<>()) != list->end()) {
    throw InputError(fmt::format(
        "--milestones '{}': expected increasing epochs from 1 to --epochs - 1 ({}) separated "
        "by commas, e.g. 82,123 (the rate is multiplied by --gamma after that many epochs)",
        text, epochs - 1));
  }
  return *list;
}

// "0:0.2,0.2:1,1:0": knots fraction:multiple, fractions increasing from 0 to 1.
std::vector<std::pair<double, double>> knot_list(const std::string& text) {
  const auto refuse = [&] {
    return InputError(fmt::format(
        "--lr-knots '{}': expected FRACTION:MULTIPLE pairs separated by commas, the fractions of "
        "the run increasing from 0 to 1 and the multiples of --lr from 0 to 1e6, e.g. "
        "0:0.2,0.2:1,1:0 (airbench's: up from 0.2 x lr to lr over the first fifth, then down "
        "to 0)",
        text));
  };
  std::vector<std::pair<double, double>> knots;
  std::stringstream list(text);
  for (std::string item; std::getline(list, item, ',');) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos) throw refuse();
    char* end = nullptr;
    const std::string x = item.substr(0, colon), y = item.substr(colon + 1);
    const double fraction = std::strtod(x.c_str(), &end);
    if (x.empty() || *end != '\0') throw refuse();
    const double multiple = std::strtod(y.c_str(), &end);
    if (y.empty() || *end != '\0') throw refuse();
    if (!(fraction >= 0 && fraction <= 1) || !(multiple >= 0 && multiple <= 1e6) ||
        (!knots.empty() && !(fraction > knots.back().first))) {
      throw refuse();
    }
    knots.emplace_back(fraction, multiple);
  }
  if (knots.size() < 2 || knots.front().first != 0 || knots.back().first != 1 ||
      text.back() == ',') {
    throw refuse();
  }
  return knots;
}

// "norm:lr=64:wd=0.02", "whiten.bias:epochs=3", "norm.weight:frozen".
train::ParamGroup param_group(const std::string& text) {
  const auto refuse = [&](const std::string& why) {
    return InputError(fmt::format(
        "--param-group '{}': {}; expected PATTERN:KEY=VALUE:..., the keys lr (a multiple of the "
        "rate, >= 0), wd (the group's weight decay, >= 0), epochs (trained in the first N "
        "epochs only) or frozen, e.g. norm:lr=64:wd=0.02 or whiten.bias:epochs=3",
        text, why));
  };
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ':');) parts.push_back(part);
  if (parts.size() < 2 || parts[0].empty() || text.back() == ':') {
    throw refuse("a name pattern and at least one setting are needed");
  }
  train::ParamGroup g;
  g.pattern = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    if (part == "frozen") {
      g.frozen = true;
      continue;
    }
    const size_t eq = part.find('=');
    const std::string key = part.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : part.substr(eq + 1);
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !std::isfinite(v) || v < 0 || v > 1e9) {
      throw refuse(fmt::format("'{}' is not KEY=VALUE with a number from 0 to 1e9", part));
    }
    if (key == "lr") {
      g.lr_scale = v;
    } else if (key == "wd") {
      g.weight_decay = v;
    } else if (key == "epochs") {
      if (v != std::floor(v)) {
        throw refuse(fmt::format("'{}': epochs takes a whole number of epochs", part));
      }
      g.epochs = static_cast<int64_t>(v);
    } else {
      throw refuse(fmt::format("unknown setting '{}'", part));
    }
  }
  return g;
}

}  // namespace

void add_recipe_flags(cxxopts::Options& o) {
  o.add_options("recipe (the defaults are the tutorial's)")
      ("schedule", "learning rate per epoch: poly (the tutorial: lr * (1 - epoch/epochs)^power), "
       "cosine (lr * (1 + cos(pi * epoch/epochs)) / 2), step (lr times --gamma after each of "
       "--milestones), or constant; or per step: piecewise (--lr-knots)",
       cxxopts::value<std::string>()->default_value("poly"))
      ("lr-knots", "with --schedule piecewise: FRACTION:MULTIPLE pairs, the rate at each step "
       "interpolated linearly between them over the run, e.g. 0:0.2,0.2:1,1:0 (airbench's "
       "warm-up and warm-down)", cxxopts::value<std::string>())
      ("milestones", "with --schedule step: the epochs after which the rate is multiplied by "
       "--gamma, e.g. 82,123", cxxopts::value<std::string>())
      ("gamma", "with --schedule step: the factor at each milestone",
       cxxopts::value<std::string>()->default_value("0.1"))
      ("weight-decay", "L2 penalty added to the gradient as torch.optim.SGD does (wd x weight)",
       cxxopts::value<std::string>()->default_value("0"))
      ("param-group", "PATTERN:KEY=VALUE:...: the parameters whose names (mgpu export lists "
       "them) contain PATTERN train with lr=M times the rate, weight decay wd=W, only in the "
       "first epochs=N epochs (under --lookahead they still move with the average after them, "
       "as in airbench), or not at all (frozen); repeat it for more groups (a name takes "
       "the first that matches), e.g. --param-group norm:lr=64:wd=0.02",
       cxxopts::value<std::vector<std::string>>())
      ("loss-reduction", "mean (the tutorial's: the batch's mean loss) or sum (the loss and "
       "its gradient summed over the global batch, as airbench's)",
       cxxopts::value<std::string>()->default_value("mean"))
      ("lookahead", "every N steps, move the weights and batch-norm statistics to their "
       "exponential moving average and train on from there (airbench's lookahead; the average "
       "keeps decay^N x (step / steps)^3 of itself), and end the run on the average as of the "
       "last multiple of N steps (0: off)",
       cxxopts::value<std::string>()->default_value("0"))
      ("lookahead-decay", "with --lookahead: the per-step decay",
       cxxopts::value<std::string>()->default_value("0.95"))
      ("translate", "random shifts of up to N pixels with reflected borders (airbench's crop of "
       "the reflect-padded image) instead of the tutorial's 10% with repeated edges (0)",
       cxxopts::value<std::string>()->default_value("0"))
      ("flip", "random (each image at random, each epoch: the tutorial's), alternating (each "
       "image flipped at random once, then the whole set mirrored on odd epochs, as airbench's) "
       "or none", cxxopts::value<std::string>()->default_value("random"))
      ("no-decay-norm-bias", "with --weight-decay: leave 1-d parameters (batch-norm scales and "
       "shifts, biases) undecayed, as timm does")
      ("nesterov", "Nesterov momentum, as torch.optim.SGD(nesterov=True)")
      ("label-smoothing", "train against (1 - s) x one-hot + s / classes (the training loss is "
       "the smoothed one; val_loss stays plain cross-entropy)",
       cxxopts::value<std::string>()->default_value("0"))
      ("clip-grad-norm", "scale the global batch's gradient down to at most this 2-norm before "
       "the step, as torch.nn.utils.clip_grad_norm_ (0: off)",
       cxxopts::value<std::string>()->default_value("0"))
      ("tta", "test-time augmentation of each epoch's validation, as airbench's: none, mirror "
       "(the mean of the image's and its mirror image's logits) or mirror-translate (that, "
       "averaged with the same for the image moved one pixel up-left and down-right)",
       cxxopts::value<std::string>()->default_value("none"));
}

namespace {

// --schedule and the flags that shape it: --lr-knots, --power, --milestones, --gamma.
void schedule_flags(const cxxopts::ParseResult& r, train::TrainConfig& c) {
  c.schedule = one_of(r, "schedule", {"poly", "cosine", "step", "constant", "piecewise"});
  if (c.schedule == "piecewise") {
    if (!r.count("lr-knots")) {
      throw InputError("--schedule piecewise needs --lr-knots, e.g. --lr-knots 0:0.2,0.2:1,1:0");
    }
    c.lr_knots = knot_list(get<std::string>(r, "lr-knots"));
  } else if (r.count("lr-knots")) {
    throw InputError(fmt::format("--lr-knots belongs to --schedule piecewise, not {}",
                                 c.schedule));
  }
  if (r.count("power") && c.schedule != "poly") {
    throw InputError(fmt::format("--power shapes the poly schedule; --schedule {} has none",
                                 c.schedule));
  }
  if (c.schedule == "step") {
    if (!r.count("milestones")) {
      throw InputError("--schedule step needs --milestones, e.g. --milestones 82,123");
    }
    c.milestones = milestone_list(get<std::string>(r, "milestones"),
                                  static_cast<int64_t>(std::ceil(c.epochs)));
    c.gamma = number_in(r, "gamma", 0, 1, true, "a factor in (0, 1]");
  } else if (r.count("milestones") || r.count("gamma")) {
    throw InputError(fmt::format("--{} belongs to --schedule step, not {}",
                                 r.count("milestones") ? "milestones" : "gamma", c.schedule));
  }
}

// --lookahead, --lookahead-decay.
void lookahead_flags(const cxxopts::ParseResult& r, train::TrainConfig& c) {
  c.lookahead = int_at_least(r, "lookahead", 0, 1 << 20);
  c.lookahead_decay = number_in(r, "lookahead-decay", 0, 1, false, "a decay in [0, 1]");
  if (r.count("lookahead-decay") && c.lookahead == 0) {
    throw InputError("--lookahead-decay needs --lookahead N (every N steps)");
  }
}

}  // namespace

void recipe_flags(const cxxopts::ParseResult& r, train::TrainConfig& c) {
  schedule_flags(r, c);
  c.weight_decay = number_in(r, "weight-decay", 0, 1e3, false, "a number from 0 to 1000");
  c.param_groups.clear();
  if (r.count("param-group")) {
    for (const auto& text : get<std::vector<std::string>>(r, "param-group")) {
      c.param_groups.push_back(param_group(text));
    }
  }
  c.loss_reduction = one_of(r, "loss-reduction", {"mean", "sum"});
  lookahead_flags(r, c);
  c.translate = int_at_least(r, "translate", 0, 64);
  c.flip = one_of(r, "flip", {"random", "alternating", "none"});
  c.decay_norm_bias = !flag_on(r, "no-decay-norm-bias");
  if (!c.decay_norm_bias && c.weight_decay == 0) {
    throw InputError("--no-decay-norm-bias needs --weight-decay > 0 (without decay it changes "
                     "nothing)");
  }
  c.nesterov = flag_on(r, "nesterov");
  if (c.nesterov && c.momentum == 0) {
    throw InputError("--nesterov needs --momentum > 0 (Nesterov's step looks ahead along the "
                     "momentum; --nesterov=false turns off a recipe's)");
  }
  c.label_smoothing = number_in(r, "label-smoothing", 0, 1, false, "a number in [0, 1)");
  if (c.label_smoothing == 1) {
    throw InputError("--label-smoothing 1: expected a number in [0, 1) (1 leaves no label)");
  }
  c.clip_grad_norm = number_in(r, "clip-grad-norm", 0, std::numeric_limits<float>::max(), false,
                               "a norm >= 0 (0: off)");
  c.tta = train::tta_name(train::parse_tta(get<std::string>(r, "tta")));
}

nlohmann::json groups_json(const std::vector<train::ParamGroup>& groups) {
  auto j = nlohmann::json::array();
  for (const auto& g : groups) {
    j.push_back({{"pattern", g.pattern},
                 {"lr", g.lr_scale},
                 {"weight_decay", g.weight_decay},
                 {"epochs", g.epochs},
                 {"frozen", g.frozen}});
  }
  return j;
}

nlohmann::json recipe_summary(const train::TrainConfig& c) {
  return {{"schedule", c.schedule},
          {"milestones", c.milestones},
          {"gamma", c.gamma},
          {"lr_knots", c.lr_knots},
          {"weight_decay", c.weight_decay},
          {"decay_norm_bias", c.decay_norm_bias},
          {"nesterov", c.nesterov},
          {"label_smoothing", c.label_smoothing},
          {"clip_grad_norm", c.clip_grad_norm},
          {"tta", c.tta},
          {"param_groups", groups_json(c.param_groups)},
          {"loss_reduction", c.loss_reduction},
          {"lookahead", c.lookahead},
          {"lookahead_decay", c.lookahead_decay},
          {"translate", c.translate},
          {"flip", c.flip}};
}

nlohmann::json recipe_fingerprint(const train::TrainConfig& c) {
  nlohmann::json j = nlohmann::json::object();
  if (c.schedule != "poly") j["schedule"] = c.schedule;
  if (c.schedule == "step") {
    j["milestones"] = c.milestones;
    j["gamma"] = c.gamma;
  }
  if (c.schedule == "piecewise") j["lr_knots"] = c.lr_knots;
  if (c.weight_decay > 0) {
    j["weight_decay"] = c.weight_decay;
    j["decay_norm_bias"] = c.decay_norm_bias;
  }
  if (c.nesterov) j["nesterov"] = true;
  if (c.label_smoothing > 0) j["label_smoothing"] = c.label_smoothing;
  if (c.clip_grad_norm > 0) j["clip_grad_norm"] = c.clip_grad_norm;
  if (c.tta != "none") j["tta"] = c.tta;  // what the history's val_loss and val_acc mean
  if (!c.param_groups.empty()) j["param_groups"] = groups_json(c.param_groups);
  if (c.loss_reduction != "mean") j["loss_reduction"] = c.loss_reduction;
  if (c.lookahead > 0) {
    j["lookahead"] = c.lookahead;
    j["lookahead_decay"] = c.lookahead_decay;
  }
  if (c.translate > 0) j["translate"] = c.translate;
  if (c.flip != "random") j["flip"] = c.flip;
  return j;
}

}  // namespace mgpu::app
