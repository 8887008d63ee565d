// write_pickle: torch.save's format, written atomically.
#include "train/files/Pickle.h"

#include <caffe2/serialize/inline_container.h>
#include <fmt/core.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include <fstream>
#include <stdexcept>
#include <vector>

#include "train/files/AtomicFile.h"  // defines: write_atomically

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {

// torch::pickle_save without its type tags: they name torch.jit._pickle.restore_type_tag,
// which Python's torch.load refuses with weights_only=True (its default since PyTorch 2.6).
// Otherwise the same: a zip archive of data.pkl and the tensors' storages.
std::vector<char> pickle_for_python(const c10::IValue& value) {
  std::vector<char> pickle;
  torch::jit::Pickler pickler(
      [&](const char* data, size_t size) { pickle.insert(pickle.end(), data, data + size); },
      /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
      /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(value);
  pickler.stop();
  std::vector<char> archive;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
    archive.insert(archive.end(), static_cast<const char*>(data),
                   static_cast<const char*>(data) + size);
    return size;
  });
  torch::jit::writeArchiveAndTensors("data", pickle.data(), pickle.size(), pickler.tensorData(),
                                     writer);
  writer.writeEndOfFile();
  return archive;
}

}  // namespace

void write_pickle(const fs::path& path, const c10::IValue& value) {
  const std::vector<char> bytes = pickle_for_python(value);
  write_atomically(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw std::runtime_error(fmt::format("cannot write {}", tmp.string()));
  });
}

}  // namespace mgpu::train
