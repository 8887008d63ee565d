// The rendezvous of a multi-process job: c10d's TCPStore (from LibTorch) at the launcher's
// MASTER_ADDR:MASTER_PORT, through which the NCCL id and Gloo's addresses travel.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <memory>

#include "train/comm/Communicator.h"  // defines: CommError
#include "train/comm/Launcher.h"

namespace mgpu::train {

/// Rank 0 hosts a TCPStore on master_addr:master_port (under torchrun, its agent does) and
/// waits for the others to connect; every rank gets a client, its keys under "mgpu/". Throws
/// CommError naming the address if the job does not assemble within timeout_s.
c10::intrusive_ptr<c10d::Store> connect_store(const ProcessInfo& process, double timeout_s);

}  // namespace mgpu::train
