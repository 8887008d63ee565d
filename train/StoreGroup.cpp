// TCPStore rendezvous and the store communicator.
#include "train/StoreGroup.h"

#include <fmt/core.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstring>
#include <thread>

namespace mgpu::train {

namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

class StoreCommunicator : public Communicator {
 public:
  StoreCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int world, double timeout_s)
      : store_(std::move(store)), rank_(rank), world_(world), timeout_s_(timeout_s) {}

  // Rank 0 hosts the store: it stays until every rank has said goodbye (or the deadline), so
  // that no peer loses the store in the middle of its last operation.
  ~StoreCommunicator() override {
    try {
      const int64_t left = store_->add("mgpu/bye", 1);
      if (rank_ != 0) return;
      const auto deadline = Clock::now() + millis(timeout_s_);
      for (int64_t n = left; n < world_ && Clock::now() < deadline; n = store_->add("mgpu/bye", 0)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    } catch (const std::exception&) {
      // Destructors must not throw; a broken store needs no goodbye.
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "store"; }

  void all_reduce_sum(torch::Tensor& tensor) override {
    const std::string prefix = fmt::format("mgpu/{}/", seq_++);
    const auto mine = publish(prefix, tensor, "all_reduce");
    torch::NoGradGuard no_grad;
    auto sum = torch::zeros(tensor.sizes(), tensor.options().device(torch::kCPU));
    for (int r = 0; r < world_; ++r) {  // rank order: the same sum on every rank
      sum += r == rank_ ? mine : fetch(prefix, r, tensor, "all_reduce");
    }
    finish(prefix);
    tensor.copy_(sum);
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    const std::string prefix = fmt::format("mgpu/{}/", seq_++);
    if (rank_ == root) {
      publish(prefix, tensor, "broadcast");
    } else {
      torch::NoGradGuard no_grad;
      tensor.copy_(fetch(prefix, root, tensor, "broadcast"));
    }
    finish(prefix);
  }

  void abort(const std::string& reason) override {
    try {
      store_->set("mgpu/abort", std::vector<uint8_t>(reason.begin(), reason.end()));
    } catch (const std::exception&) {
      // The store may be what failed; the peers then time out on their own.
    }
  }

 private:
  // Writes this rank's tensor under prefix + rank; returns it as a CPU tensor.
  torch::Tensor publish(const std::string& prefix, const torch::Tensor& tensor, const char* op) {
    auto cpu = tensor.detach().to(torch::kCPU).contiguous();
    const auto* bytes = static_cast<const uint8_t*>(cpu.data_ptr());
    guarded(op, [&] {
      store_->set(prefix + std::to_string(rank_),
                  std::vector<uint8_t>(bytes, bytes + cpu.nbytes()));
    });
    return cpu;
  }

  // Waits (polling, so that an abort or the deadline is noticed) for rank r's tensor.
  torch::Tensor fetch(const std::string& prefix, int r, const torch::Tensor& like, const char* op) {
    const std::string key = prefix + std::to_string(r);
    const auto deadline = Clock::now() + millis(timeout_s_);
    std::vector<uint8_t> bytes;
    guarded(op, [&] {
      while (!store_->check({key})) {
        if (store_->check({"mgpu/abort"})) {
          const auto why = store_->get("mgpu/abort");
          throw CommError(fmt::format("rank {}: {} aborted: {}", rank_, op,
                                      std::string(why.begin(), why.end())));
        }
        if (Clock::now() > deadline) {
          throw CommError(fmt::format("rank {}: {} timed out after {:.1f} s waiting for rank {}",
                                      rank_, op, timeout_s_, r));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      bytes = store_->get(key);
    });
    auto cpu = torch::empty(like.sizes(), like.options().device(torch::kCPU));
    if (static_cast<int64_t>(bytes.size()) != cpu.nbytes()) {
      throw CommError(fmt::format("rank {}: {} got {} bytes from rank {}, expected {}", rank_, op,
                                  bytes.size(), r, cpu.nbytes()));
    }
    std::memcpy(cpu.data_ptr(), bytes.data(), bytes.size());
    return cpu;
  }

  // The last rank to finish reading deletes the operation's keys.
  void finish(const std::string& prefix) {
    guarded("cleanup", [&] {
      if (store_->add(prefix + "done", 1) == world_) {
        for (int r = 0; r < world_; ++r) store_->deleteKey(prefix + std::to_string(r));
        store_->deleteKey(prefix + "done");
      }
    });
  }

  // Store failures (a dead host, a closed socket) become CommErrors that say where.
  template <typename F>
  void guarded(const char* op, F f) {
    try {
      f();
    } catch (const CommError&) {
      throw;
    } catch (const c10::Error& e) {
      throw CommError(fmt::format("rank {}: {} lost the job's store (has rank 0 died?): {}",
                                  rank_, op, e.what_without_backtrace()));
    }
  }

  c10::intrusive_ptr<c10d::Store> store_;
  int rank_, world_;
  double timeout_s_;
  uint64_t seq_ = 0;
};

}  // namespace

c10::intrusive_ptr<c10d::Store> connect_store(const ProcessInfo& p, double timeout_s) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(p.master_port);
  options.isServer = p.rank == 0;
  options.numWorkers = static_cast<size_t>(p.world_size);
  options.waitWorkers = true;
  options.timeout = millis(timeout_s);
  try {
    return c10::make_intrusive<c10d::TCPStore>(p.master_addr, options);
  } catch (const c10::Error& e) {
    throw CommError(fmt::format(
        "rank {} of {} ({}): could not assemble the job at {}:{} within {:.1f} s: {}", p.rank,
        p.world_size, p.launcher, p.master_addr, p.master_port, timeout_s,
        e.what_without_backtrace()));
  }
}

std::unique_ptr<Communicator> make_store_communicator(c10::intrusive_ptr<c10d::Store> store,
                                                      int rank, int world, double timeout_s) {
  return std::make_unique<StoreCommunicator>(std::move(store), rank, world, timeout_s);
}

}  // namespace mgpu::train
