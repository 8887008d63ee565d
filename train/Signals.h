// Stop requests: SIGINT, SIGTERM (what Slurm sends before it kills a job) and SIGUSR1 ask the
// run to stop at the next step boundary, after a checkpoint; a second SIGINT ends it at once.
#pragma once

#include <stdexcept>
#include <string>

namespace mgpu::train {

/// Exit code of a run that stopped on request after writing its checkpoint (resume it with
/// `--resume auto`). 0 success, 1 failure, 2 usage or input, 130 a second SIGINT.
constexpr int kExitStopped = 3;
/// Exit code after a second SIGINT: stopped at once, without a checkpoint (128 + SIGINT).
constexpr int kExitInterrupted = 130;

/// Thrown (on every replica together) once the checkpoint of a requested stop is written.
class StopRequested : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Installs the handlers (`mgpu train` only: main installs them before anything else runs,
/// and takes them away from the other commands). Async-signal-safe.
void install_stop_handlers();
/// Puts the default actions back; a stop asked for before then is carried out now, as the
/// default action would have done it.
void release_stop_handlers();
/// The signal that asked for a stop (SIGINT, SIGTERM, SIGUSR1), or 0.
int stop_signal();
/// Forgets a stop request (tests).
void clear_stop_request();
/// "SIGTERM" and so on.
std::string signal_name(int signal);

}  // namespace mgpu::train
