// A decorator that holds back each collective's completion until a simulated link would have
// carried its bytes.
#include "train/comm/SimulatedLink.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <thread>

#include "data/InputError.h"       // defines: InputError
#include "train/comm/WorkQueue.h"  // defines: WorkQueue

namespace mgpu::train {

namespace {

using Clock = std::chrono::steady_clock;

Clock::duration span(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// The link is a queue that carries one collective at a time, in the order they were started:
// a transfer begins once the wrapped collective has finished (every rank has joined it) and the
// link is free, and takes its bytes' time, slept, not computed.
class LinkCommunicator : public Communicator {
 public:
  LinkCommunicator(std::unique_ptr<Communicator> inner, const LinkSpeed& link)
      : inner_(std::move(inner)), link_(link) {}

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend() const override { return inner_->backend(); }

  std::unique_ptr<Work> all_reduce_sum_async(torch::Tensor tensor) override {
    std::shared_ptr<Work> inner = inner_->all_reduce_sum_async(tensor);
    return link_queue_.start([inner, takes = takes(tensor)] {
      inner->wait();
      std::this_thread::sleep_for(takes);
    });
  }
  void broadcast(torch::Tensor& tensor, int root) override {
    link_queue_
        .start([&] {
          inner_->broadcast(tensor, root);
          std::this_thread::sleep_for(takes(tensor));
        })
        ->wait();
  }
  void abort(const std::string& reason) override { inner_->abort(reason); }

 private:
  Clock::duration takes(const torch::Tensor& tensor) const {
    return span(link_.seconds(static_cast<double>(tensor.numel() * tensor.element_size())));
  }

  std::unique_ptr<Communicator> inner_;
  LinkSpeed link_;
  WorkQueue link_queue_;  // last: its thread ends before the members its jobs use
};

}  // namespace

std::optional<LinkSpeed> simulated_link_from_env() {
  const char* text = std::getenv("MGPU_SIM_LINK");
  if (!text || !*text) return std::nullopt;
  LinkSpeed link;
  char extra = 0;
  if (std::sscanf(text, "%lf,%lf%c", &link.gb_per_s, &link.latency_us, &extra) != 2 ||
      !(link.gb_per_s > 0) || !(link.latency_us >= 0) || !std::isfinite(link.gb_per_s) ||
      !std::isfinite(link.latency_us)) {
    throw data::InputError(fmt::format(
        "MGPU_SIM_LINK '{}': expected GBPS,LATENCY_US (GB/s > 0 and microseconds >= 0), e.g. "
        "1,50",
        text));
  }
  return link;
}

std::vector<std::unique_ptr<Communicator>> behind_link(
    std::vector<std::unique_ptr<Communicator>> comms, const LinkSpeed& link) {
  for (auto& c : comms) {
    if (c->backend() == "nccl") {
      throw data::InputError(
          "MGPU_SIM_LINK simulates a link for the CPU's communicators (local "
          "threads, Gloo), not for NCCL: unset it, or train on the CPU");
    }
    c = std::make_unique<LinkCommunicator>(std::move(c), link);
  }
  return comms;
}

std::vector<std::unique_ptr<Communicator>> behind_link_from_env(
    std::vector<std::unique_ptr<Communicator>> comms) {
  const auto link = simulated_link_from_env();
  if (!link || comms.empty()) return comms;
  if (comms.front()->rank() == 0) {
    static std::once_flag told;
    std::call_once(told, [&] {
      std::cerr << fmt::format(
          "MGPU_SIM_LINK: every collective of B bytes takes at least "
          "B / {} GB/s + {} us (a simulated link)\n",
          link->gb_per_s, link->latency_us);
    });
  }
  return behind_link(std::move(comms), *link);
}

}  // namespace mgpu::train
