// What the ranks of a job compare before the first step (train/StartAgreement.h): settings
// that would make their collectives differ are refused, naming the rank and the setting.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "data/InputError.h"
#include "train/StartAgreement.h"

using namespace mgpu;
using namespace mgpu::train;

namespace {

// The message check_start_records throws for these ranks' configurations ("" if none).
std::string refusal(const std::vector<TrainConfig>& configs) {
  std::vector<nlohmann::json> ranks;
  for (const auto& c : configs) {
    ranks.push_back(start_record(start_settings("{\"model\": \"minigooglenet\"}", c,
                                                static_cast<int64_t>(configs.size()), nullptr),
                                 "starts afresh", ""));
  }
  try {
    check_start_records(ranks);
  } catch (const data::InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// NCCL needs every rank's collectives captured into CUDA graphs, or none: a rank started
// without --cuda-graphs beside one with it is refused before the first step.
TEST(StartAgreement, RanksThatCaptureTheStepAndRanksThatDoNotAreRefused) {
  TrainConfig eager, graphs;
  graphs.cuda_graphs = true;
  EXPECT_EQ(refusal({eager, eager}), "");
  EXPECT_EQ(refusal({graphs, graphs}), "");
  const std::string text = refusal({graphs, eager});
  EXPECT_NE(text.find("the processes were started with different runs, so they cannot train "
                      "together: step: rank 0 has \"captured as a CUDA graph (--cuda-graphs)\", "
                      "rank 1 \"eager\""),
            std::string::npos)
      << text;
}

TEST(StartAgreement, ARefusalAndAnotherPlaceToStartAreNamed) {
  TrainConfig c;
  const auto settings = start_settings("", c, 2, nullptr);
  try {
    check_start_records({start_record(settings, "starts afresh", ""),
                         start_record(settings, "starts afresh", "no checkpoint in runs/x")});
    FAIL() << "a refusal was not refused";
  } catch (const data::InputError& e) {
    EXPECT_EQ(std::string(e.what()), "rank 1 cannot start: no checkpoint in runs/x");
  }
  EXPECT_THROW(check_start_records({start_record(settings, "starts afresh", ""),
                                    start_record(settings, "resumes from checkpoint a.pt", "")}),
               data::InputError);
}
