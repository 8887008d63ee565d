// make_communicators: the communicators of a job's replicas, from --comm, the devices and the
// launcher's variables.
#pragma once

#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "train/comm/Communicator.h"
#include "train/comm/Launcher.h"  // defines: ProcessInfo

namespace mgpu::train {

/// One communicator per device of this process. Several processes (a launcher's variables are
/// set): NCCL between GPUs (one process per GPU, or per node driving all its GPUs; every
/// process must have as many as the others), Gloo between CPU processes (one replica each).
/// One process: NCCL between its GPUs, else none (the Trainer makes its in-process group).
/// comm is "auto", "local" or "nccl"; timeout_s bounds every collective and the rendezvous,
/// whose wait ends with AssemblyStopped (train/comm/StoreGroup.h) once stop_requested() is
/// true. Throws data::InputError for a combination that cannot work (NCCL without GPUs,
/// several CPU replicas per process under a launcher), before waiting for any peer.
std::vector<std::unique_ptr<Communicator>> make_communicators(
    const std::string& comm, double timeout_s, const ProcessInfo& process,
    const std::vector<torch::Device>& devices,
    const std::function<bool()>& stop_requested = {});

}  // namespace mgpu::train
