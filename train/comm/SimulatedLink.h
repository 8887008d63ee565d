// SimulatedLink: CPU communicators behind a simulated slow link (MGPU_SIM_LINK), so that the
// overlap of communication with the backward pass can be measured without a second GPU.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "train/comm/Communicator.h"

namespace mgpu::train {

struct LinkSpeed {
  double gb_per_s = 0;    // 1e9 bytes per second
  double latency_us = 0;  // added to every collective
  /// A collective of `bytes` occupies the link this long.
  double seconds(double bytes) const { return bytes / (gb_per_s * 1e9) + latency_us * 1e-6; }
};

/// MGPU_SIM_LINK="GBPS,LATENCY_US" (e.g. "1,50"): nullopt when it is unset or empty. Throws
/// data::InputError naming the variable and what was expected when it is malformed.
std::optional<LinkSpeed> simulated_link_from_env();

/// Each communicator behind its own link of that speed: a collective of B bytes (the tensor's
/// size) occupies the link for B / bandwidth + latency, starting once the wrapped collective
/// has finished (every rank has joined it) and the link is free (one collective at a time, in
/// the order they were started); a thread of the link's own sleeps that time rather than using
/// the CPU, and wait() returns when it is over. The sums are the wrapped communicators', unchanged.
/// Only for the CPU's communicators (local threads, Gloo): with NCCL, wait() does not block the
/// host, so a host delay would not delay the device. Throws data::InputError for NCCL.
std::vector<std::unique_ptr<Communicator>> behind_link(
    std::vector<std::unique_ptr<Communicator>> comms, const LinkSpeed& link);

/// behind_link(comms, the environment's link), or comms as they are without MGPU_SIM_LINK;
/// says so on stderr (rank 0's, once a process) when it simulates.
std::vector<std::unique_ptr<Communicator>> behind_link_from_env(
    std::vector<std::unique_ptr<Communicator>> comms);

}  // namespace mgpu::train
