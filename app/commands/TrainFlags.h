// mgpu train's flags: the options, their checks into a TrainConfig, and a model's recipe put
// before the flags the user gave.
#pragma once

#include <cxxopts.hpp>

#include <string>
#include <vector>

#include "train/TrainConfig.h"

namespace mgpu::app {

cxxopts::Options train_options();
/// The parsed flags, checked; throws data::InputError naming a flag and what it expects.
train::TrainConfig parse_train(const cxxopts::ParseResult& r);
/// The command line with the model's recipe (models/Models.def) before the user's flags, less
/// the recipe's flags the user gave (and those they qualify).
std::vector<std::string> with_recipe(const cxxopts::ParseResult& r,
                                     const std::vector<std::string>& args);

}  // namespace mgpu::app
