// Trainer::share_checkpoint: the ranks of a job across nodes agree on the newest checkpoint any
// of them holds and copy its bytes to the ranks without it, so a resume needs no shared folder
// (docs/multi-gpu.md, "Across nodes").
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <torch/torch.h>
#include <zlib.h>

#include <fstream>
#include <iterator>

#include "data/InputError.h"          // defines: InputError
#include "train/Replica.h"            // defines: Trainer::Replica
#include "train/comm/Communicator.h"  // defines: gather_rows
#include "train/files/AtomicFile.h"   // defines: write_atomically

namespace mgpu::train {

namespace fs = std::filesystem;

namespace {

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (!in.good() && !in.eof()) {
    throw data::InputError(fmt::format("{}: could not be read", file.string()));
  }
  return bytes;
}

// A checkpoint's record: "SIZE CRC32 NAME" (the name last: it may hold spaces).
std::string describe_bytes(const fs::path& file, const std::string& bytes) {
  const auto crc = crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()),
                         static_cast<uInt>(bytes.size()));
  return fmt::format("{} {:08x} {}", bytes.size(), crc, file.filename().string());
}

std::string name_in(const std::string& record) {
  return record.substr(record.find(' ', record.find(' ') + 1) + 1);
}

// The rank whose record names the newest checkpoint (names sort by epoch and step; the first
// such rank), or records.size() when no rank resumes.
size_t newest_record(const std::vector<std::string>& records) {
  size_t root = records.size();
  for (size_t rank = 0; rank < records.size(); ++rank) {
    if (!records[rank].empty() && records[rank] != "-" &&
        (root == records.size() || name_in(records[rank]) > name_in(records[root]))) {
      root = rank;
    }
  }
  return root;
}

// Several processes of a node may share the folder and all take the copy: each writes a file
// of its own, then renames it into place (the same bytes; the last rename wins).
void write_copy(const fs::path& copy, const std::string& bytes, int rank) {
  fs::create_directories(copy.parent_path());
  const fs::path own = fs::path(copy.string() + fmt::format(".rank-{}", rank));
  write_atomically(own, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error(fmt::format("{}: could not be written", tmp.string()));
  });
  fs::rename(own, copy);
}

}  // namespace

std::optional<fs::path> Trainer::share_checkpoint(const std::optional<fs::path>& mine,
                                                  const fs::path& dir, std::string* sent) {
  if (world_size() == replicas()) return mine;  // one process: nothing to share
  // The record: "-" from a process started without --resume (it takes no copy, and
  // agree_on_start then refuses the job, whose processes were told different things); "" for
  // no checkpoint; "!why" for one that cannot be read (every rank then refuses at once).
  std::string bytes, record = config_.resume.empty() ? "-" : "";
  if (mine && record.empty()) {
    try {
      bytes = read_bytes(*mine);
      record = describe_bytes(*mine, bytes);
    } catch (const std::exception& e) {
      record = std::string("!") + e.what();
    }
  }
  std::vector<std::string> records;  // every rank's, in rank order
  for_each_replica([&](Replica& r) {
    auto all = gather_texts(r.comm.get(), record, r.device);
    if (&r == replicas_[0].get()) records = std::move(all);
  });
  for (size_t rank = 0; rank < records.size(); ++rank) {
    if (!records[rank].empty() && records[rank][0] == '!') {
      throw data::InputError(fmt::format("rank {} cannot start: {}", rank, records[rank].substr(1)));
    }
  }
  // The newest checkpoint any rank has: rank 0's under mgpu's own launch, whichever node's
  // after torchrun reordered the ranks of a restarted job.
  const size_t root = newest_record(records);
  if (root == records.size()) return mine;  // nobody resumes
  std::vector<size_t> lacking;
  for (size_t rank = 0; rank < records.size(); ++rank) {
    if (records[rank] != records[root] && records[rank] != "-") lacking.push_back(rank);
  }
  if (lacking.empty()) return mine;
  // A broadcast of its bytes: the ranks that have them ignore the copy.
  const std::string& newest = records[root];
  const int64_t size = std::stoll(newest.substr(0, newest.find(' ')));
  const bool have = record == newest;
  torch::Tensor received;
  for_each_replica([&](Replica& r) {
    auto buffer =
        have ? torch::from_blob(const_cast<char*>(bytes.data()), {size}, torch::kUInt8)
                   .to(r.device, /*non_blocking=*/false, /*copy=*/true)
             : torch::empty({size}, torch::TensorOptions(torch::kUInt8).device(r.device));
    r.comm->broadcast(buffer, static_cast<int>(root));
    if (&r == replicas_[0].get()) received = buffer.cpu();
  });
  if (sent) {
    *sent = fmt::format("{} ({:.1f} MB) of rank {} sent to rank(s) {}, which lacked it",
                        name_in(newest), size / 1e6, root, fmt::join(lacking, ", "));
  }
  if (have || record == "-") return mine;
  const fs::path copy = dir / name_in(newest);
  try {
    const std::string got(reinterpret_cast<const char*>(received.data_ptr<uint8_t>()),
                          static_cast<size_t>(size));
    if (describe_bytes(copy, got) != newest) {
      throw CommError(fmt::format("rank {}: the checkpoint {} that rank {} sent arrived damaged",
                                  replicas_[0]->comm->rank(), name_in(newest), root));
    }
    write_copy(copy, got, replicas_[0]->comm->rank());
  } catch (const std::exception& e) {
    agree_on_start(e.what());  // every rank refuses, not only this one (it throws)
    throw;
  }
  return copy;
}

}  // namespace mgpu::train
