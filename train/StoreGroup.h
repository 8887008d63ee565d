// Process groups over c10d's TCPStore (from LibTorch): the rendezvous of a multi-process job,
// and a CPU communicator for one replica per process that moves tensors through the store.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <memory>

#include "train/Communicator.h"
#include "train/Launcher.h"

namespace mgpu::train {

/// Rank 0 hosts a TCPStore on master_addr:master_port and waits for the others to connect;
/// every rank gets a client. Throws CommError naming the address if the job does not
/// assemble within timeout_s.
c10::intrusive_ptr<c10d::Store> connect_store(const ProcessInfo& process, double timeout_s);

/// A Communicator between processes (rank of world) through the store: each rank publishes
/// its tensor under a key, reads everyone's, and sums them in rank order, so every rank gets
/// bit-identical results. Meant for CPU replicas (GPU replicas use NCCL). A peer that does not
/// publish within timeout_s, or a lost store, is a CommError naming the rank and operation.
std::unique_ptr<Communicator> make_store_communicator(c10::intrusive_ptr<c10d::Store> store,
                                                      int rank, int world, double timeout_s);

}  // namespace mgpu::train
