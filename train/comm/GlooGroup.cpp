// c10d's ProcessGroupGloo behind the Communicator interface.
#include "train/comm/GlooGroup.h"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <sstream>
#include <thread>
#include <vector>

#include "data/InputError.h"

namespace mgpu::train {

namespace {

std::string first_line(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  return text.substr(0, text.find('\n'));
}

class GlooCommunicator : public Communicator {
 public:
  // peers: where each rank's Gloo is (an address, an interface or a host name), by rank.
  GlooCommunicator(c10::intrusive_ptr<c10d::ProcessGroupGloo> group, int rank, int world,
                   double timeout_s, std::vector<std::string> peers)
      : group_(std::move(group)),
        rank_(rank),
        world_(world),
        timeout_s_(timeout_s),
        peers_(std::move(peers)) {}

  // The ranks leave together: rank 0 hosts the job's store, and a rank that closed its
  // connections while a peer still finished its last collective would fail that peer. After a
  // failure there is no farewell: the peers learn of it from the closed connections.
  ~GlooCommunicator() override {
    if (!failure_.empty()) return;
    try {
      group_->barrier()->wait();
    } catch (const std::exception&) {
      // Destructors must not throw; a peer that is gone needs no goodbye.
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "gloo"; }

  // An all-gather, then every rank adds the rows itself in rank order, as the threads of one
  // process do (LocalGroup): N processes then train bit for bit as N replicas, where Gloo's
  // ring all-reduce would add in another order (float addition is not associative: 3.3e-3
  // relative after 4 steps of 3 ranks). It moves world - 1 copies of the tensor to each rank
  // where a ring moves about two; for the gradients of CPU-sized models (MiniGoogLeNet's are
  // 6.6 MB) on a few processes, that is the price of exact equality. Gloo's own threads move
  // the rows; wait() adds them.
  std::unique_ptr<Work> all_reduce_sum_async(torch::Tensor tensor) override {
    check("all_reduce", tensor);
    std::vector<std::vector<at::Tensor>> rows(1);
    for (int r = 0; r < world_; ++r) rows[0].push_back(torch::empty_like(tensor));
    std::vector<at::Tensor> mine{tensor};
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = group_->allgather(rows, mine);
    } catch (const std::exception& e) {
      throw failed("all_reduce", e);
    }
    return std::make_unique<GatherWork>(this, std::move(work), std::move(rows[0]), tensor);
  }

  void broadcast(torch::Tensor& tensor, int root) override {
    check("broadcast", tensor);
    std::vector<at::Tensor> tensors{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    try {
      group_->broadcast(tensors, options)->wait();
    } catch (const std::exception& e) {
      throw failed("broadcast", e);
    }
  }

  void abort(const std::string& reason) override {
    if (failure_.empty()) failure_ = reason;
  }

 private:
  // The all-gather under way, and the sum of its rows that wait() makes.
  class GatherWork : public Work {
   public:
    GatherWork(GlooCommunicator* comm, c10::intrusive_ptr<c10d::Work> work,
               std::vector<at::Tensor> rows, torch::Tensor tensor)
        : comm_(comm), work_(std::move(work)), rows_(std::move(rows)), tensor_(std::move(tensor)) {}
    void wait() override {
      try {
        work_->wait();
      } catch (const std::exception& e) {
        error_ = comm_->failed("all_reduce", e).what();
        throw CommError(error_);
      }
      torch::NoGradGuard no_grad;
      torch::Tensor sum = rows_[0];
      for (size_t r = 1; r < rows_.size(); ++r) sum = sum + rows_[r];
      tensor_.copy_(sum);
    }
    bool test() override { return work_->isCompleted(); }
    std::string error() const override { return error_; }

   private:
    GlooCommunicator* comm_;
    c10::intrusive_ptr<c10d::Work> work_;
    std::vector<at::Tensor> rows_;
    torch::Tensor tensor_;
    std::string error_;
  };

  void check(const char* op, const torch::Tensor& tensor) {
    TORCH_CHECK(tensor.device().is_cpu() && tensor.is_contiguous(), "Gloo ", op, ": rank ", rank_,
                " needs a contiguous CPU tensor");
    if (!failure_.empty()) {
      throw CommError(fmt::format("rank {}: {} after an earlier failure: {}", rank_, op, failure_));
    }
  }

  // Remembers the first failure (later calls fail at once) and makes its error, naming the
  // peers (a timeout does not say which one is missing; with two ranks there is one).
  CommError failed(const char* op, const std::exception& e) {
    if (failure_.empty()) {
      std::vector<std::string> others;
      for (int r = 0; r < world_; ++r) {
        if (r != rank_) others.push_back(fmt::format("rank {} at {}", r, peers_[r]));
      }
      failure_ = fmt::format("rank {}: Gloo {} failed (a peer died, or did not take part within "
                             "{:.1f} s; {}: {}): {}",
                             rank_, op, timeout_s_, others.size() == 1 ? "the peer" : "the peers",
                             fmt::join(others, ", "), first_line(e));
    }
    return CommError(failure_);
  }

  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  int rank_, world_;
  double timeout_s_;
  std::string failure_;  // set by the first failure or abort; later calls fail at once
  std::vector<std::string> peers_;
};

}  // namespace

namespace {

// How much longer than --comm-timeout the group may take to form before this rank gives up.
constexpr double kFormingGrace = 5;

// The group made by `make` on a thread of its own, or null when it is not made within
// `seconds`. Gloo's connectFullMesh can outlast its context's timeout several times over when
// a peer dies while the group forms (54 s for a 10 s --comm-timeout, across two nodes), and
// nothing else bounds it; a thread still forming is left behind, blocked in Gloo, and the
// process exits on the error. make's own error is rethrown.
c10::intrusive_ptr<c10d::ProcessGroupGloo> form_within(
    double seconds, std::function<c10::intrusive_ptr<c10d::ProcessGroupGloo>()> make) {
  auto formed = std::make_shared<std::promise<c10::intrusive_ptr<c10d::ProcessGroupGloo>>>();
  auto future = formed->get_future();
  std::thread([formed, make = std::move(make)] {
    try {
      formed->set_value(make());
    } catch (...) {
      formed->set_exception(std::current_exception());
    }
  }).detach();
  if (future.wait_for(std::chrono::duration<double>(seconds)) != std::future_status::ready) {
    return {};
  }
  return future.get();
}

}  // namespace

std::string local_address_towards(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (host.empty() || getaddrinfo(host.c_str(), "9", &hints, &found) != 0) return "";
  std::string address;
  for (const addrinfo* a = found; a != nullptr && address.empty(); a = a->ai_next) {
    const int fd = socket(a->ai_family, SOCK_DGRAM, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t size = sizeof local;
    // Connecting a UDP socket only picks the route and the source address.
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&local), &size) == 0) {
      char text[INET6_ADDRSTRLEN] = {};
      const void* raw = local.ss_family == AF_INET
                            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr)
                            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
      if (inet_ntop(local.ss_family, raw, text, sizeof text) != nullptr) address = text;
    }
    close(fd);
  }
  freeaddrinfo(found);
  const bool loopback = address.rfind("127.", 0) == 0 || address == "::1";
  return loopback ? "" : address;
}

std::unique_ptr<Communicator> make_gloo_communicator(const c10::intrusive_ptr<c10d::Store>& store,
                                                     int rank, int world, double timeout_s,
                                                     const std::string& master_addr) {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  std::string here;  // where this rank's Gloo is, for the others' messages
  if (const char* names = std::getenv("GLOO_SOCKET_IFNAME"); names && *names) {
    here = fmt::format("{} (GLOO_SOCKET_IFNAME)", names);
    std::stringstream list(names);
    for (std::string name; std::getline(list, name, ',');) {
      try {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
      } catch (const std::exception& e) {
        throw data::InputError(fmt::format("rank {}: GLOO_SOCKET_IFNAME names '{}', which Gloo "
                                           "cannot use: {}",
                                           rank, name, first_line(e)));
      }
    }
  } else if (const auto local = local_address_towards(master_addr); !local.empty()) {
    // On several hosts the hostname may resolve to a loopback address (Debian's 127.0.1.1)
    // or to another network than the one rank 0 is on.
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(local));
    here = local;
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    std::array<char, 256> host{};
    gethostname(host.data(), host.size() - 1);
    here = host.data();
  }
  auto peers = c10::make_intrusive<c10d::PrefixStore>("mgpu/peers", store);
  // Gloo's keys live under their own prefix, apart from the NCCL id and anything else.
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("mgpu/gloo", store);
  try {
    peers->set(std::to_string(rank), here);
    auto group = form_within(timeout_s + kFormingGrace, [prefixed, rank, world, options] {
      return c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, world, options);
    });
    if (!group) {
      throw CommError(fmt::format(
          "rank {}: the Gloo group of {} processes did not form within {:.1f} s (a peer died "
          "or cannot be reached while it formed; Gloo was bound to {})",
          rank, world, timeout_s + kFormingGrace, here));
    }
    std::vector<std::string> where;  // every rank set its key before it joined the group
    for (int r = 0; r < world; ++r) {
      const auto value = peers->get(std::to_string(r));
      where.emplace_back(value.begin(), value.end());
    }
    return std::make_unique<GlooCommunicator>(std::move(group), rank, world, timeout_s,
                                              std::move(where));
  } catch (const CommError&) {
    throw;
  } catch (const std::exception& e) {
    throw CommError(fmt::format("rank {}: the Gloo group of {} processes did not form within "
                                "{:.1f} s: {}",
                                rank, world, timeout_s, first_line(e)));
  }
}

}  // namespace mgpu::train
