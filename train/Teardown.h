// The end of a job's device state, in the one order that cannot hang. NCCL's destroy and
// abort (commReclaim -> commDestroySync in src/init.cc, 2.28.9; the last communicator of a
// process does it for all of them) wait until every CUDA graph that captured a collective of
// the communicators is destroyed (localPersistentRefs). A communicator destroyed or aborted
// while any replica's graph lives therefore waits forever. So: every graph first, then every
// communicator.
#pragma once

#include <memory>
#include <vector>

namespace mgpu::train {

/// replicas: anything with `graph` and `comm` members that reset() destroys (Trainer's
/// replicas; the tests' stand-ins, which record the order). Destructors must not throw.
template <typename Replica>
void release_graphs_then_communicators(std::vector<std::unique_ptr<Replica>>& replicas) noexcept {
  for (auto& r : replicas) r->graph.reset();
  for (auto& r : replicas) r->comm.reset();
}

}  // namespace mgpu::train
