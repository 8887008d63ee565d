// Stop requests: SIGINT, SIGTERM (what Slurm sends before it kills a job) and SIGUSR1 ask the
// run to stop at the next step boundary, after a checkpoint; a second SIGINT ends it at once.
#pragma once

#include <stdexcept>
#include <string>

namespace mgpu::train {

/// Exit code of a run that stopped on request after writing its checkpoint (resume it with
/// `--resume auto`). 0 success, 1 failure, 2 usage or input, 130 a second SIGINT.
constexpr int kExitStopped = 3;

/// Thrown (on every replica together) once the checkpoint of a requested stop is written.
class StopRequested : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Installs the handlers (for the life of the process; `mgpu train` only).
void install_stop_handlers();
/// The signal that asked for a stop (SIGINT, SIGTERM, SIGUSR1), or 0.
int stop_signal();
/// Forgets a stop request (tests).
void clear_stop_request();
/// "SIGTERM" and so on.
std::string signal_name(int signal);

}  // namespace mgpu::train
