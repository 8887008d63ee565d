// TCPStore rendezvous, waited for in short polls so that a stop request ends the wait at once
// (c10d's own waits, for a server to listen and for the workers to arrive, cannot be ended).
#include "train/comm/StoreGroup.h"

#include <fmt/core.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <cstring>
#include <vector>
#include <cerrno>
#include <chrono>
#include <fcntl.h>
#include <thread>

namespace mgpu::train {

namespace {

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// host:port's addresses; empty if the name does not resolve.
std::vector<sockaddr_storage> resolve(const std::string& host, int port,
                                      std::vector<socklen_t>* lengths) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::vector<sockaddr_storage> addresses;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) {
    return addresses;
  }
  for (addrinfo* a = found; a; a = a->ai_next) {
    sockaddr_storage address{};
    std::memcpy(&address, a->ai_addr, a->ai_addrlen);
    addresses.push_back(address);
    lengths->push_back(a->ai_addrlen);
  }
  freeaddrinfo(found);
  return addresses;
}

// One TCP connection attempt to each address, given up after wait_ms; true if something
// accepted it (the connection is closed at once: only the listening is tested).
bool accepts(const std::vector<sockaddr_storage>& addresses,
             const std::vector<socklen_t>& lengths, int wait_ms) {
  for (size_t i = 0; i < addresses.size(); ++i) {
    const auto* address = reinterpret_cast<const sockaddr*>(&addresses[i]);
    const int fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    bool ok = false;
    if (connect(fd, address, lengths[i]) == 0) {
      ok = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int error = 0;
      socklen_t length = sizeof error;
      ok = poll(&p, 1, wait_ms) == 1 &&
           getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0;
    }
    close(fd);
    if (ok) return true;
  }
  return false;
}

// Polls until done() or the deadline (false), throwing AssemblyStopped on a stop request.
template <typename Done>
bool wait_until(Done done, Clock::time_point deadline, const std::function<bool()>& stop,
                const std::string& stopped) {
  while (!done()) {
    if (stop && stop()) throw AssemblyStopped(stopped);
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

}  // namespace

c10::intrusive_ptr<c10d::Store> connect_store(const ProcessInfo& p, double timeout_s,
                                              const std::function<bool()>& stop_requested) {
  const auto deadline = Clock::now() + millis(timeout_s);
  const std::string where = fmt::format("rank {} of {} ({}): could not assemble the job at {}:{} "
                                        "within {:.1f} s",
                                        p.rank, p.world_size, p.launcher, p.master_addr,
                                        p.master_port, timeout_s);
  const std::string stopped = fmt::format(
      "rank {} of {} ({}): stopped while waiting for the job to assemble at {}:{}", p.rank,
      p.world_size, p.launcher, p.master_addr, p.master_port);
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(p.master_port);
  // Under torchrun its agent hosts the store and every rank is a client, as PyTorch's own
  // rendezvous does (torch.distributed.rendezvous._create_c10d_store).
  options.isServer = p.rank == 0 && !p.agent_store;
  options.numWorkers = static_cast<size_t>(p.world_size);
  options.waitWorkers = false;  // the arrivals are counted below, in polls
  if (!options.isServer) {
    std::vector<socklen_t> lengths;
    const auto addresses = resolve(p.master_addr, p.master_port, &lengths);
    if (addresses.empty()) {
      throw CommError(fmt::format("{}: the host name {} does not resolve (MASTER_ADDR)", where,
                                  p.master_addr));
    }
    if (!wait_until([&] { return accepts(addresses, lengths, 100); }, deadline, stop_requested,
                    stopped)) {
      throw CommError(where + ": nothing accepted a connection there (is rank 0 running?)");
    }
  }
  // c10d logs each failed attempt, and the last with a C++ backtrace; the errors here say it
  // once, with the cause.
  const int log_level = FLAGS_caffe2_log_level;
  FLAGS_caffe2_log_level = std::max(log_level, 3);  // fatal errors only
  try {
    // The server is there now. c10d's client tries until its timeout, pauses (its backoff, a
    // few seconds) and tries again as long: a third of what is left keeps it within the deadline.
    const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    options.timeout = millis(std::max(1.0, options.isServer ? left : left / 3));
    auto tcp = c10::make_intrusive<c10d::TCPStore>(p.master_addr, options);
    FLAGS_caffe2_log_level = log_level;
    tcp->setTimeout(millis(timeout_s));
    // mgpu's keys beside torchrun's, and a torchrun restart's apart from the attempt before it
    // (its agent's store keeps that attempt's keys: the NCCL id, Gloo's addresses, the count),
    // as torch.distributed's own rendezvous keeps each attempt's under its number.
    auto store = c10::make_intrusive<c10d::PrefixStore>(
        fmt::format("mgpu/attempt-{}", p.restart), tcp);
    // Every process counts itself in, then waits for the count to reach the world size.
    const std::string joined = "joined";
    store->add(joined, 1);
    int64_t count = 0;
    if (!wait_until([&] { return (count = store->add(joined, 0)) >= p.world_size; }, deadline,
                    stop_requested, stopped)) {
      throw CommError(fmt::format("{}: {} of {} processes joined", where, count, p.world_size));
    }
    return store;
  } catch (const c10::Error& e) {
    FLAGS_caffe2_log_level = log_level;
    throw CommError(fmt::format("{}: {}", where, e.what_without_backtrace()));
  }
}

}  // namespace mgpu::train
