// LocalGroup: a Communicator for replicas that are threads of one process (CPU replicas, or
// any devices when no faster backend is wanted). Reductions go through shared memory.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "train/comm/Communicator.h"

namespace mgpu::train {

/// n communicators, rank 0..n-1, sharing one group. A collective that waits longer than
/// timeout for a peer throws CommError naming the waiting rank, the operation and the
/// missing ranks.
std::vector<std::unique_ptr<Communicator>> make_local_group(int n,
                                                            std::chrono::milliseconds timeout);

}  // namespace mgpu::train
