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

std::vector<std::string> gather_texts(Communicator* comm, const std::string& text,
                                      const torch::Device& device) {
  const auto longs = torch::TensorOptions().dtype(torch::kInt64).device(device);
  const auto lengths =
      gather_rows(comm, torch::full({1}, static_cast<int64_t>(text.size()), longs)).cpu();
  // One int64 a byte: every backend sums int64 exactly.
  std::vector<int64_t> bytes(static_cast<size_t>(lengths.max().item<int64_t>()), 0);
  for (size_t i = 0; i < text.size(); ++i) bytes[i] = static_cast<unsigned char>(text[i]);
  const auto rows =
      gather_rows(comm, torch::tensor(bytes, torch::kInt64).to(device)).cpu().contiguous();
  std::vector<std::string> texts;
  for (int64_t r = 0; r < rows.size(0); ++r) {
    std::string t(static_cast<size_t>(lengths[r][0].item<int64_t>()), '\0');
    const int64_t* row = rows[r].data_ptr<int64_t>();
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<char>(row[i]);
    texts.push_back(std::move(t));
  }
  return texts;
}

}  // namespace mgpu::train
