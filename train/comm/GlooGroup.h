// GlooGroup: the communicator between CPU processes, over c10d's Gloo process group (the Gloo
// that LibTorch carries), one replica per process, joined through the job's TCPStore.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <memory>
#include <string>

#include "train/comm/Communicator.h"

namespace mgpu::train {

/// Rank `rank` of `world` processes. Every collective has a deadline of timeout_s; a peer that
/// dies (its connections close) or stalls past the deadline is a CommError naming this rank
/// and the operation. The Gloo device binds to GLOO_SOCKET_IFNAME's interfaces if that is set
/// (comma-separated, as in PyTorch); else to the address this machine reaches `master_addr`
/// from (the interface the route to rank 0's store goes out of), where that is not a loopback
/// address; else, as PyTorch does, to the address the hostname resolves to, or the loopback.
std::unique_ptr<Communicator> make_gloo_communicator(const c10::intrusive_ptr<c10d::Store>& store,
                                                     int rank, int world, double timeout_s,
                                                     const std::string& master_addr = "");

/// The local address that packets to `host` leave from (the kernel's route; nothing is sent),
/// or "" where `host` does not resolve or is reached over the loopback interface.
std::string local_address_towards(const std::string& host);

}  // namespace mgpu::train
