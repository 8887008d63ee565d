// What the processes of a job tell each other before the first step (Trainer::agree_on_start),
// and the check that refuses ranks which would not take the same steps.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "train/TrainConfig.h"
#include "train/comm/Reducer.h"

namespace mgpu::train {

/// The settings every rank must share: the run's fingerprint (a JSON object, or empty), the
/// rate, the world size, how the gradients are cut into collectives (reducer: null without
/// one), and whether the step is a captured CUDA graph (NCCL needs every rank's collectives
/// captured alike).
nlohmann::json start_settings(const std::string& fingerprint, const TrainConfig& config,
                              int64_t world_size, const Reducer* reducer);

/// A rank's record: its settings, where it starts ("starts afresh" or the checkpoint it
/// resumes from) and why it cannot start (empty when it can).
nlohmann::json start_record(nlohmann::json settings, const std::string& start,
                            const std::string& refusal);

/// Throws data::InputError naming the rank and what differs when the records (in rank order)
/// show a refusal, other settings than rank 0's, or another place to start from.
void check_start_records(const std::vector<nlohmann::json>& ranks);

}  // namespace mgpu::train
