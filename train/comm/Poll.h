// poll_until: how the host waits for the device and for NCCL's non-blocking calls, which are
// read by polling: it spins first (most of these waits end within microseconds), then sleeps
// between polls, so that a short wait costs no sleep and a long one no core.
#pragma once

#include <chrono>
#include <thread>

namespace mgpu::train {

/// How long a wait spins before its first sleep. A spin, not a yield: on a loaded machine a
/// yield hands the core to another thread for a whole time slice (milliseconds; measured in
/// docs/benchmarks.md, "Polling").
inline constexpr std::chrono::microseconds kPollSpin{20};
/// The sleep between later polls (the kernel makes it 50-110 us).
inline constexpr std::chrono::microseconds kPollSleep{50};

/// Calls ready() until it returns true (then returns true), or until give_up() does (then
/// returns false); give_up is asked only after a ready() that returned false.
template <typename Ready, typename GiveUp>
bool poll_until(Ready&& ready, GiveUp&& give_up) {
  const auto spin_until = std::chrono::steady_clock::now() + kPollSpin;
  while (true) {
    if (ready()) return true;
    if (give_up()) return false;
    if (std::chrono::steady_clock::now() >= spin_until) std::this_thread::sleep_for(kPollSleep);
  }
}

}  // namespace mgpu::train
