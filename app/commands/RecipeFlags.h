// The flags that change the tutorial's recipe for other models (schedule, weight decay,
// Nesterov, label smoothing, gradient clipping, test-time augmentation): their help, their
// checks, and what of them a run's fingerprint and summary record. Every default is the
// tutorial's.
#pragma once

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "train/TrainConfig.h"  // defines: TrainConfig

namespace mgpu::app {

/// --schedule, --milestones, --gamma, --weight-decay, --param-group, --no-decay-norm-bias,
/// --nesterov, --label-smoothing, --loss-reduction, --clip-grad-norm, --tta, --lookahead,
/// --translate, --flip.
void add_recipe_flags(cxxopts::Options& o);
/// Reads them into c; c.epochs and c.momentum must be set already (the checks use them).
void recipe_flags(const cxxopts::ParseResult& r, train::TrainConfig& c);

/// --param-group's groups as JSON (weight_decay -1: the run's; epochs -1: all).
nlohmann::json groups_json(const std::vector<train::ParamGroup>& groups);
/// The settings as summary.json's config records them (all of them).
nlohmann::json recipe_summary(const train::TrainConfig& c);
/// The settings that differ from the tutorial's, for a checkpoint's fingerprint: a resume with
/// another value is refused, and checkpoints of tutorial runs keep their fingerprint.
nlohmann::json recipe_fingerprint(const train::TrainConfig& c);

}  // namespace mgpu::app
