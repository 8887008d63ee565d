// The handlers only store the signal number: everything else happens at a step boundary.
#include "train/Signals.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <string>

namespace mgpu::train {

namespace {

std::atomic<int> requested{0};
static_assert(std::atomic<int>::is_always_lock_free, "the handler must be async-signal-safe");

extern "C" void on_stop_signal(int signal) {
  if (signal == SIGINT && requested.load() != 0) {
    constexpr char kMessage[] = "\nmgpu: second interrupt: stopping now, without a checkpoint\n";
    (void)!::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    ::_exit(kExitInterrupted);
  }
  requested.store(signal);
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a system call in flight resumes instead of failing
  for (int signal : {SIGINT, SIGTERM, SIGUSR1}) sigaction(signal, &action, nullptr);
}

void release_stop_handlers() {
  for (int signal : {SIGINT, SIGTERM, SIGUSR1}) std::signal(signal, SIG_DFL);
  if (const int asked = requested.exchange(0)) std::raise(asked);
}

int stop_signal() { return requested.load(); }

void clear_stop_request() { requested.store(0); }

std::string signal_name(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal " + std::to_string(signal);
  }
}

}  // namespace mgpu::train
