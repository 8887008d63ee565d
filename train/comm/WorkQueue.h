// WorkQueue: a communicator's operations run one at a time, in the order they were started, on
// a thread of its own, so that the caller goes on (with its backward pass) while they run.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "train/comm/Communicator.h"

namespace mgpu::train {

class WorkQueue {
 public:
  WorkQueue();
  /// Runs what is still queued, then ends the thread.
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  /// Queues job; the returned Work's wait() returns when it has run, rethrowing what it threw
  /// (error() is that exception's message).
  std::unique_ptr<Work> start(std::function<void()> job);
  /// Nothing queued and nothing running.
  bool idle();

 private:
  struct Job;
  class JobWork;
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool busy_ = false, stopping_ = false;
  std::thread thread_;  // last: it starts once the members it uses exist
};

}  // namespace mgpu::train
