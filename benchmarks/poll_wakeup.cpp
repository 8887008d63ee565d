// How long the host's wait for a non-blocking NCCL call or a CUDA event (train/comm/Poll.h)
// takes to notice that the thing it polls is ready, when it becomes ready a few microseconds
// in: poll_until (spins 20 us, then sleeps) beside the loop it replaced (a 50 us sleep between
// every two polls). The ready thing here is a clock: what is timed is the waiting, not NCCL.
// Build and run: g++ -O2 -std=c++17 -I. benchmarks/poll_wakeup.cpp -o /tmp/poll_wakeup -pthread
//                /tmp/poll_wakeup
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "train/comm/Poll.h"

using Clock = std::chrono::steady_clock;

// Microseconds from the moment ready() turns true to the wait's return, median of n waits.
template <typename Wait>
double median_delay_us(Wait wait, double ready_after_us, int n = 2000) {
  std::vector<double> delays;
  for (int i = 0; i < n; ++i) {
    const auto ready_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double, std::micro>(ready_after_us));
    wait([&] { return Clock::now() >= ready_at; });
    delays.push_back(std::chrono::duration<double, std::micro>(Clock::now() - ready_at).count());
  }
  std::sort(delays.begin(), delays.end());
  return delays[delays.size() / 2];
}

int main() {
  const auto poll = [](auto ready) { mgpu::train::poll_until(ready, [] { return false; }); };
  const auto sleep_50us = [](auto ready) {
    while (!ready()) std::this_thread::sleep_for(std::chrono::microseconds(50));
  };
  std::printf("ready after  poll_until  sleep 50 us (median delay to notice, us)\n");
  for (double after : {0.0, 2.0, 5.0, 20.0, 100.0}) {
    std::printf("%8.0f us  %10.2f  %11.2f\n", after, median_delay_us(poll, after),
                median_delay_us(sleep_50us, after));
  }
}
