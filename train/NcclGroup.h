// NcclGroup: a Communicator per local GPU over raw NCCL calls (no c10d ProcessGroupNCCL).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "train/Communicator.h"

namespace mgpu::train {

/// One NCCL communicator per device in `devices` (CUDA devices of this process, one replica
/// each), created together with ncclCommInitAll. Collectives are queued on a per-device NCCL
/// stream ordered after the device's current stream by events; each call then waits for its
/// completion, polling ncclCommGetAsyncError, and aborts the communicator and throws
/// CommError (naming the rank and the operation) once timeout_s has passed.
/// Throws data::InputError when a device is not a visible CUDA GPU or the build has no NCCL.
std::vector<std::unique_ptr<Communicator>> make_nccl_group(const std::vector<torch::Device>& devices,
                                                           double timeout_s);

/// One rank of a multi-process NCCL job (one GPU per process): rank 0 creates the NCCL unique
/// id and publishes it through the job's store; every rank then joins with ncclCommInitRank.
std::unique_ptr<Communicator> make_nccl_rank(torch::Device device, c10d::Store& store, int rank,
                                             int world, double timeout_s);

}  // namespace mgpu::train
