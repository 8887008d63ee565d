// libFuzzer target: Trainer::resume on arbitrary bytes. Any input must be refused with an
// error (InputError, or LibTorch's c10::Error for an archive that lacks an entry) or resume;
// a crash, a hang or a sanitizer report is a finding.
#include <cstdint>
#include <string>

#include "FuzzInput.h"
#include "data/InputError.h"
#include "models/MiniGoogLeNet.h"
#include "train/Trainer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mgpu::train::Trainer* trainer = [] {
    torch::set_num_threads(1);
    mgpu::train::TrainConfig config;
    config.verbose = 0;
    mgpu::models::MiniGoogLeNet net(
        mgpu::models::MiniGoogLeNetOptions().in_channels(1).num_classes(2));
    auto* t = new mgpu::train::Trainer(config, torch::nn::AnyModule(net), torch::kCPU,
                                       torch::zeros({1, 28, 28}));
    mgpu::train::CheckpointPolicy policy;
    policy.fingerprint = R"({"epochs": 70})";
    t->set_checkpoints(policy);
    return t;
  }();
  const std::string path = mgpu::fuzz::input_file("checkpoint", data, size);
  try {
    trainer->resume(path);
  } catch (const mgpu::data::InputError&) {
  } catch (const c10::Error&) {
  }
  return 0;
}
