// TCPStore rendezvous.
#include "train/comm/StoreGroup.h"

#include <fmt/core.h>
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <chrono>

namespace mgpu::train {

namespace {

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

}  // namespace

c10::intrusive_ptr<c10d::Store> connect_store(const ProcessInfo& p, double timeout_s) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(p.master_port);
  // Under torchrun its agent hosts the store and every rank is a client, as PyTorch's own
  // rendezvous does (torch.distributed.rendezvous._create_c10d_store).
  options.isServer = p.rank == 0 && !p.agent_store;
  options.numWorkers = static_cast<size_t>(p.world_size);
  options.waitWorkers = true;
  // A client tries to connect until its timeout, pauses (c10d's backoff, a few seconds) and
  // tries once more as long: a third of it each keeps the whole wait within --comm-timeout
  // (with half, a 16 s timeout was overrun by more than 8 s). Rank 0 waits all of it.
  options.timeout = millis(options.isServer ? timeout_s : timeout_s / 3);
  // c10d logs each failed attempt, and the last with a C++ backtrace; the error below says it
  // once, with the cause.
  const int log_level = FLAGS_caffe2_log_level;
  FLAGS_caffe2_log_level = std::max(log_level, 3);  // fatal errors only
  try {
    auto store = c10::make_intrusive<c10d::TCPStore>(p.master_addr, options);
    FLAGS_caffe2_log_level = log_level;
    store->setTimeout(millis(timeout_s));
    return c10::make_intrusive<c10d::PrefixStore>("mgpu", store);  // beside torchrun's keys
  } catch (const c10::Error& e) {
    FLAGS_caffe2_log_level = log_level;
    throw CommError(fmt::format(
        "rank {} of {} ({}): could not assemble the job at {}:{} within {:.1f} s: {}", p.rank,
        p.world_size, p.launcher, p.master_addr, p.master_port, timeout_s,
        e.what_without_backtrace()));
  }
}

}  // namespace mgpu::train
