// Collectives built from the Communicator interface's own operations.
#include "train/comm/Communicator.h"

namespace mgpu::train {

torch::Tensor gather_rows(Communicator* comm, const torch::Tensor& row) {
  if (!comm) return row.flatten().unsqueeze(0);
  auto rows = torch::zeros({comm->world_size(), row.numel()}, row.options());
  rows[comm->rank()].copy_(row.flatten());
  comm->all_reduce_sum(rows);
  return rows;
}

}  // namespace mgpu::train
