// TCPStore rendezvous.
#include "train/comm/StoreGroup.h"

#include <fmt/core.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

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
  options.isServer = p.rank == 0;
  options.numWorkers = static_cast<size_t>(p.world_size);
  options.waitWorkers = true;
  options.timeout = millis(timeout_s);
  try {
    return c10::make_intrusive<c10d::TCPStore>(p.master_addr, options);
  } catch (const c10::Error& e) {
    throw CommError(fmt::format(
        "rank {} of {} ({}): could not assemble the job at {}:{} within {:.1f} s: {}", p.rank,
        p.world_size, p.launcher, p.master_addr, p.master_port, timeout_s,
        e.what_without_backtrace()));
  }
}

}  // namespace mgpu::train
