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

#include "data/InputError.h"  // defines: InputError

namespace mgpu::train {

namespace {

using Clock = std::chrono::steady_clock;

Clock::duration span(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

class LinkWork : public Work {
 public:
  LinkWork(std::unique_ptr<Work> inner, Clock::time_point done_at)
      : inner_(std::move(inner)), done_at_(done_at) {}
  void wait() override {
    inner_->wait();
    std::this_thread::sleep_until(done_at_);
  }
  bool test() override { return inner_->test() && Clock::now() >= done_at_; }
  std::string error() const override { return inner_->error(); }

 private:
  std::unique_ptr<Work> inner_;
  Clock::time_point done_at_;
};

class LinkCommunicator : public Communicator {
 public:
  LinkCommunicator(std::unique_ptr<Communicator> inner, const LinkSpeed& link)
      : inner_(std::move(inner)), link_(link) {}

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend() const override { return inner_->backend(); }

  std::unique_ptr<Work> all_reduce_sum_async(torch::Tensor tensor) override {
    const auto done_at = book(tensor);
    return std::make_unique<LinkWork>(inner_->all_reduce_sum_async(tensor), done_at);
  }
  void broadcast(torch::Tensor& tensor, int root) override {
    const auto done_at = book(tensor);
    inner_->broadcast(tensor, root);
    std::this_thread::sleep_until(done_at);
  }
  void abort(const std::string& reason) override { inner_->abort(reason); }

 private:
  // The link carries one collective at a time: this one's turn starts when it is free.
  Clock::time_point book(const torch::Tensor& tensor) {
    std::lock_guard<std::mutex> lock(mutex_);
    const double bytes = static_cast<double>(tensor.numel() * tensor.element_size());
    free_at_ = std::max(free_at_, Clock::now()) + span(link_.seconds(bytes));
    return free_at_;
  }

  std::unique_ptr<Communicator> inner_;
  LinkSpeed link_;
  std::mutex mutex_;
  Clock::time_point free_at_{};
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
      throw data::InputError("MGPU_SIM_LINK simulates a link for the CPU's communicators (local "
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
      std::cerr << fmt::format("MGPU_SIM_LINK: every collective of B bytes takes at least "
                               "B / {} GB/s + {} us (a simulated link)\n",
                               link->gb_per_s, link->latency_us);
    });
  }
  return behind_link(std::move(comms), *link);
}

}  // namespace mgpu::train
