// make_communicators: which communicator a job's replicas use, chosen in one place.
#include "train/comm/Groups.h"

#include <fmt/core.h>

#include "data/InputError.h"        // defines: InputError
#include "train/comm/GlooGroup.h"   // defines: make_gloo_communicator
#include "train/comm/NcclGroup.h"   // defines: make_nccl_group, make_nccl_ranks
#include "train/comm/StoreGroup.h"  // defines: connect_store

namespace mgpu::train {

std::vector<std::unique_ptr<Communicator>> make_communicators(
    const std::string& comm, double timeout_s, const ProcessInfo& process,
    const std::vector<torch::Device>& devices, const std::function<bool()>& stop_requested) {
  const bool gpus = devices[0].is_cuda();
  const bool nccl =
      comm == "nccl" || (comm == "auto" && gpus && (devices.size() > 1 || process.world_size > 1));
  if (nccl && !gpus) throw data::InputError("--comm nccl needs GPUs (--gpus 1 or more)");
  if (process.world_size == 1) {
    if (!nccl) return {};
    return make_nccl_group(devices, timeout_s);
  }
  if (!nccl && devices.size() != 1) {  // refused before waiting for the peers
    throw data::InputError(fmt::format(
        "{} started {} processes: on the CPU each drives one replica, so use --cpu-replicas 1",
        process.launcher, process.world_size));
  }
  auto store = connect_store(process, timeout_s, stop_requested);
  if (nccl) {
    const int per_process = static_cast<int>(devices.size());
    return make_nccl_ranks(devices, *store, process.rank * per_process,
                           process.world_size * per_process, timeout_s);
  }
  std::vector<std::unique_ptr<Communicator>> comms;
  comms.push_back(make_gloo_communicator(store, process.rank, process.world_size, timeout_s,
                                         process.master_addr));
  return comms;
}

}  // namespace mgpu::train
