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
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "data/InputError.h"  // defines: InputError

namespace mgpu::train {

namespace {

using Clock = std::chrono::steady_clock;

Clock::duration span(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// A collective on the link: the wrapped one, and how long its bytes take.
struct Transfer {
  std::unique_ptr<Work> inner;
  Clock::duration takes;
  std::promise<void> done;
  std::mutex mutex;
  std::string error;
};

class LinkWork : public Work {
 public:
  explicit LinkWork(std::shared_ptr<Transfer> transfer)
      : transfer_(std::move(transfer)), done_(transfer_->done.get_future()) {}
  void wait() override { done_.get(); }
  bool test() override {
    return done_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
  std::string error() const override {
    std::lock_guard<std::mutex> lock(transfer_->mutex);
    return transfer_->error;
  }

 private:
  std::shared_ptr<Transfer> transfer_;
  std::future<void> done_;
};

// The link is a thread that carries one collective at a time, in the order they were started:
// a transfer begins once the wrapped collective has finished (every rank has joined it) and the
// link is free, and takes its bytes' time, slept, not computed.
class LinkCommunicator : public Communicator {
 public:
  LinkCommunicator(std::unique_ptr<Communicator> inner, const LinkSpeed& link)
      : inner_(std::move(inner)), link_(link), thread_([this] { carry(); }) {}
  ~LinkCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend() const override { return inner_->backend(); }

  std::unique_ptr<Work> all_reduce_sum_async(torch::Tensor tensor) override {
    auto transfer = std::make_shared<Transfer>();
    transfer->takes = takes(tensor);
    transfer->inner = inner_->all_reduce_sum_async(tensor);
    auto work = std::make_unique<LinkWork>(transfer);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(transfer));
    }
    wake_.notify_all();
    return work;
  }
  void broadcast(torch::Tensor& tensor, int root) override {
    // Once a run (the first weights): after the link has carried what was started before.
    std::unique_lock<std::mutex> lock(mutex_);
    idle_.wait(lock, [&] { return queue_.empty() && !busy_; });
    lock.unlock();
    inner_->broadcast(tensor, root);
    std::this_thread::sleep_for(takes(tensor));
  }
  void abort(const std::string& reason) override { inner_->abort(reason); }

 private:
  Clock::duration takes(const torch::Tensor& tensor) const {
    return span(link_.seconds(static_cast<double>(tensor.numel() * tensor.element_size())));
  }

  void carry() {
    while (true) {
      std::shared_ptr<Transfer> t;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        t = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
      }
      try {
        t->inner->wait();
        std::this_thread::sleep_for(t->takes);
        t->done.set_value();
      } catch (const std::exception& e) {
        {
          std::lock_guard<std::mutex> lock(t->mutex);
          t->error = e.what();
        }
        t->done.set_exception(std::current_exception());
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        busy_ = false;
      }
      idle_.notify_all();
    }
  }

  std::unique_ptr<Communicator> inner_;
  LinkSpeed link_;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<std::shared_ptr<Transfer>> queue_;
  bool busy_ = false, stopping_ = false;
  std::thread thread_;  // last: it starts once the members it uses exist
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
