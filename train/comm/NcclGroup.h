// NcclGroup: a Communicator per local GPU over raw NCCL calls (no c10d ProcessGroupNCCL).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "train/comm/Communicator.h"

namespace mgpu::train {

/// One NCCL communicator per device in `devices` (CUDA devices of this process, one replica
/// each), non-blocking (ncclConfig_t.blocking = 0), joined together in one group. Collectives
/// are queued on a per-device NCCL stream ordered after the device's current stream by
/// events; the asynchronous all-reduce's wait() makes the current stream wait for it, and the
/// host never waits per step. A watchdog thread per communicator looks every 20 ms at
/// ncclCommGetAsyncError and at the collectives not yet finished: an NCCL error, or one still
/// running after timeout_s, fails the group, and every later launch, wait() or host wait
/// (wait_for_enqueued) of every local rank throws CommError naming the rank and the operation. A failed communicator is aborted when it is
/// destroyed, which its owner does after destroying the CUDA graphs that captured it
/// (train/Teardown.h): with the graphs gone, ncclCommAbort cannot wait forever.
/// Throws data::InputError when a device is not a visible CUDA GPU or the build has no NCCL.
std::vector<std::unique_ptr<Communicator>> make_nccl_group(const std::vector<torch::Device>& devices,
                                                           double timeout_s);

/// This process's ranks of a multi-process NCCL job: one per device, ranks first_rank,
/// first_rank + 1, ... of world. Global rank 0 creates the NCCL unique id and publishes it
/// through the job's store; every process then joins with ncclCommInitRankConfig (non-blocking,
/// as above) inside one group.
std::vector<std::unique_ptr<Communicator>> make_nccl_ranks(
    const std::vector<torch::Device>& devices, c10d::Store& store, int first_rank, int world,
    double timeout_s);

}  // namespace mgpu::train
