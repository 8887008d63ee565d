// The rendezvous of a multi-process job: c10d's TCPStore (from LibTorch) at the launcher's
// MASTER_ADDR:MASTER_PORT, through which the NCCL id and Gloo's addresses travel.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <functional>
#include <memory>

#include "train/comm/Communicator.h"  // defines: CommError
#include "train/comm/Launcher.h"

namespace mgpu::train {

/// The wait for a job to assemble was ended by stop_requested (a signal), not by a failure.
class AssemblyStopped : public CommError {
 public:
  using CommError::CommError;
};

/// Rank 0 hosts a TCPStore on master_addr:master_port (under torchrun, its agent does); every
/// rank gets a client, its keys under "mgpu/attempt-R/" (R: torchrun's restarts so far), and
/// returns once all world_size processes have joined. Throws CommError naming the address if the job does not assemble within timeout_s,
/// and AssemblyStopped as soon as stop_requested() returns true (it is asked every 100 ms or
/// so while the process waits for its peers).
c10::intrusive_ptr<c10d::Store> connect_store(const ProcessInfo& process, double timeout_s,
                                              const std::function<bool()>& stop_requested = {});

}  // namespace mgpu::train
