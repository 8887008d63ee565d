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

// One TCP connection attempt to host:port, given up after wait_ms; true if something accepted
// it (the connection is closed at once: only the listening is tested).
bool accepts(const std::string& host, int port, int wait_ms) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0) return false;
  bool ok = false;
  for (addrinfo* a = found; a && !ok; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ok = true;
    } else if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int error = 0;
      socklen_t length = sizeof error;
      ok = poll(&p, 1, wait_ms) == 1 &&
           getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0;
    }
    close(fd);
  }
  freeaddrinfo(found);
  return ok;
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
  if (!options.isServer &&
      !wait_until([&] { return accepts(p.master_addr, p.master_port, 100); }, deadline,
                  stop_requested, stopped)) {
    throw CommError(where + ": nothing accepted a connection there (is rank 0 running?)");
  }
  // c10d logs each failed attempt, and the last with a C++ backtrace; the errors here say it
  // once, with the cause.
  const int log_level = FLAGS_caffe2_log_level;
  FLAGS_caffe2_log_level = std::max(log_level, 3);  // fatal errors only
  try {
    options.timeout = millis(std::max(1.0, std::chrono::duration<double>(deadline - Clock::now())
                                               .count()));
    auto tcp = c10::make_intrusive<c10d::TCPStore>(p.master_addr, options);
    FLAGS_caffe2_log_level = log_level;
    tcp->setTimeout(millis(timeout_s));
    auto store = c10::make_intrusive<c10d::PrefixStore>("mgpu", tcp);  // beside torchrun's keys
    // Every process counts itself in, then waits for the count to reach the world size. A
    // torchrun restart counts afresh (its agent's store keeps the last attempt's keys).
    const std::string joined = fmt::format("joined-{}", p.restart);
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
