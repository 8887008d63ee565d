// mgpu's entry point: parse, run, and turn errors into messages and exit codes.
#include <c10/util/Exception.h>

#include <csignal>
#include <cstdlib>
#include <malloc.h>
#include <iostream>

#include "app/Cli.h"          // defines: parse_command_line, Command
#include "data/InputError.h"  // defines: InputError (exit code 2)
#include "train/Device.h"     // defines: explain_kernel_error
#include "train/Signals.h"    // defines: StopRequested, kExitStopped

namespace {

// Before every library's initialisation (LibTorch's takes about 0.3 s): a SIGTERM that early
// stops `mgpu train` after its first step, with a checkpoint, instead of killing it.
void install_stop_handlers_first(int, char**, char**) { mgpu::train::install_stop_handlers(); }
__attribute__((section(".preinit_array"), used)) void (*const preinit)(int, char**, char**) =
    install_stop_handlers_first;

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit, a write fails with EFBIG (and is reported) instead of killing us;
  // a write to a peer's closed connection fails with EPIPE, which Gloo reports as that peer's
  // failure, instead of killing us silently with SIGPIPE.
  std::signal(SIGXFSZ, SIG_IGN);
  std::signal(SIGPIPE, SIG_IGN);
  // A CPU training step allocates and frees the same large activation buffers every step.
  // glibc hands blocks above its mmap threshold (at most 32 MiB by default) back to the kernel
  // when they are freed, so each step paid page faults to map and zero them again: 24% of
  // airbench94's CPU step (docs/benchmarks.md, "airbench94"). Kept in the heap instead, they
  // are reused, as the tcmalloc or jemalloc that Intel recommends for PyTorch on CPUs would;
  // the environment's MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ still win if set.
  constexpr int kKeepBelow = 1 << 30;
  if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, kKeepBelow);
  if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, kKeepBelow);
  try {
    const auto cmd = mgpu::app::parse_command_line(std::vector<std::string>(argv, argv + argc));
    if (cmd.name != "train" || cmd.is_help()) mgpu::train::release_stop_handlers();
    if (cmd.is_help() && argc < 2) {  // no command at all: usage, on stderr, as a bad usage
      std::cerr << cmd.help;
      return 2;
    }
    if (cmd.is_help()) {
      std::cout << cmd.help;
    } else {
      cmd.run(std::cout);
    }
    return 0;
  } catch (const mgpu::train::StopRequested& e) {
    std::cerr << "mgpu: " << e.what() << "\n";
    return mgpu::train::kExitStopped;
  } catch (const mgpu::data::InputError& e) {
    std::cerr << "mgpu: error: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "mgpu: error: " << mgpu::train::explain_kernel_error(e) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mgpu: error: " << e.what() << "\n";
    return 1;
  }
}
