// The settings the ranks of a job compare before the first step, and the refusal when they
// differ (train/StartAgreement.h).
#include "train/StartAgreement.h"

#include <fmt/core.h>

#include "data/InputError.h"  // defines: InputError

namespace mgpu::train {

nlohmann::json start_settings(const std::string& fingerprint, const TrainConfig& config,
                              int64_t world_size, const Reducer* reducer) {
  nlohmann::json settings =
      nlohmann::json::parse(fingerprint.empty() ? std::string("{}") : fingerprint);
  settings["lr"] = config.lr;
  settings["world_size"] = world_size;
  // The ranks' collectives match one for one only if they cut the gradients alike, and NCCL
  // needs them captured into CUDA graphs on every rank or on none.
  if (reducer) {
    settings["gradient_buckets"] =
        config.overlap ? fmt::format("{} buckets (--bucket-mb {})", reducer->buckets().size(),
                                     config.bucket_mb)
                       : std::string("one all-reduce after the backward pass (--no-overlap)");
  }
  settings["step"] = config.cuda_graphs ? "captured as a CUDA graph (--cuda-graphs)" : "eager";
  settings["comm_dtype"] = config.comm_dtype;  // 16-bit buckets move the tail apart
  return settings;
}

nlohmann::json start_record(nlohmann::json settings, const std::string& start,
                            const std::string& refusal) {
  return {{"settings", std::move(settings)}, {"start", start}, {"refusal", refusal}};
}

namespace {

// "key: rank 0 has A, rank r B; ..." for every setting in which b differs from a.
std::string differences(const nlohmann::json& a, const nlohmann::json& b, size_t r) {
  std::string diff;
  for (const auto& [key, value] : a.items()) {
    const auto there = b.find(key);
    if (there == b.end() || *there != value) {
      diff += fmt::format("{}{}: rank 0 has {}, rank {} {}", diff.empty() ? "" : "; ", key,
                          value.dump(), r, there == b.end() ? "none" : there->dump());
    }
  }
  for (const auto& [key, value] : b.items()) {
    if (!a.contains(key)) {
      diff += fmt::format("{}{}: rank 0 has none, rank {} {}", diff.empty() ? "" : "; ", key, r,
                          value.dump());
    }
  }
  return diff;
}

}  // namespace

void check_start_records(const std::vector<nlohmann::json>& ranks) {
  for (size_t r = 0; r < ranks.size(); ++r) {
    const auto& why = ranks[r]["refusal"].get_ref<const std::string&>();
    if (!why.empty()) throw data::InputError(fmt::format("rank {} cannot start: {}", r, why));
  }
  const auto& lead = ranks[0];
  for (size_t r = 1; r < ranks.size(); ++r) {
    const std::string diff = differences(lead["settings"], ranks[r]["settings"], r);
    if (!diff.empty()) {
      throw data::InputError(fmt::format(
          "the processes were started with different runs, so they cannot train together: {}",
          diff));
    }
    if (ranks[r]["start"] != lead["start"]) {
      throw data::InputError(fmt::format(
          "the processes do not start from the same place: rank 0 {}, rank {} {}. Give every "
          "process the same --resume (auto, or the same FILE; a process whose --out-dir lacks "
          "the checkpoint gets a copy), or none to start afresh",
          lead["start"].get<std::string>(), r, ranks[r]["start"].get<std::string>()));
    }
  }
}

}  // namespace mgpu::train
