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

// A number flag in [min, max] (or (min, max] when min is excluded).
double number_in(const cxxopts::ParseResult& r, const std::string& flag, double min, double max,
                 bool min_excluded, const std::string& expected) {
  const double v = number(r, flag);
  if (!std::isfinite(v) || v < min || (min_excluded && v == min) || v > max) {
    throw InputError(fmt::format("--{} {}: expected {}", flag, v, expected));
  }
  return v;
}

// "82,123": epochs from 1 to epochs - 1, increasing.
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

void recipe_flags(const cxxopts::ParseResult& r, train::TrainConfig& c) {
  c.schedule = get<std::string>(r, "schedule");
  if (c.schedule != "poly" && c.schedule != "cosine" && c.schedule != "step" &&
      c.schedule != "constant" && c.schedule != "piecewise") {
    throw InputError(fmt::format(
        "--schedule '{}': expected poly, cosine, step, constant or piecewise", c.schedule));
  }
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
    c.milestones = milestone_list(get<std::string>(r, "milestones"), c.epochs);
    c.gamma = number_in(r, "gamma", 0, 1, true, "a factor in (0, 1]");
  } else if (r.count("milestones") || r.count("gamma")) {
    throw InputError(fmt::format("--{} belongs to --schedule step, not {}",
                                 r.count("milestones") ? "milestones" : "gamma", c.schedule));
  }
  c.weight_decay = number_in(r, "weight-decay", 0, 1, false, "a number from 0 to 1");
  c.decay_norm_bias = r.count("no-decay-norm-bias") == 0;
  if (!c.decay_norm_bias && c.weight_decay == 0) {
    throw InputError("--no-decay-norm-bias needs --weight-decay > 0 (without decay it changes "
                     "nothing)");
  }
  c.nesterov = r.count("nesterov") > 0;
  if (c.nesterov && c.momentum == 0) {
    throw InputError("--nesterov needs --momentum > 0 (Nesterov's step looks ahead along the "
                     "momentum)");
  }
  c.label_smoothing = number_in(r, "label-smoothing", 0, 1, false, "a number in [0, 1)");
  if (c.label_smoothing == 1) {
    throw InputError("--label-smoothing 1: expected a number in [0, 1) (1 leaves no label)");
  }
  c.clip_grad_norm = number_in(r, "clip-grad-norm", 0, std::numeric_limits<float>::max(), false,
                               "a norm >= 0 (0: off)");
  c.tta = train::tta_name(train::parse_tta(get<std::string>(r, "tta")));
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
          {"tta", c.tta}};
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
  return j;
}

}  // namespace mgpu::app
