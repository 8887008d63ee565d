// The thread behind the CPU communicators' asynchronous operations (train/comm/WorkQueue.h).
#include "train/comm/WorkQueue.h"

#include <future>
#include <string>

namespace mgpu::train {

struct WorkQueue::Job {
  std::function<void()> run;
  std::promise<void> done;
  std::mutex mutex;
  std::string error;  // set when run threw
};

class WorkQueue::JobWork : public Work {
 public:
  explicit JobWork(std::shared_ptr<Job> job)
      : job_(std::move(job)), done_(job_->done.get_future()) {}
  void wait() override { done_.get(); }
  bool test() override {
    return done_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
  std::string error() const override {
    std::lock_guard<std::mutex> lock(job_->mutex);
    return job_->error;
  }

 private:
  std::shared_ptr<Job> job_;
  std::future<void> done_;
};

WorkQueue::WorkQueue() : thread_([this] { loop(); }) {}

WorkQueue::~WorkQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::unique_ptr<Work> WorkQueue::start(std::function<void()> run) {
  auto job = std::make_shared<Job>();
  job->run = std::move(run);
  auto work = std::make_unique<JobWork>(job);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(job));
  }
  wake_.notify_all();
  return work;
}

bool WorkQueue::idle() {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.empty() && !busy_;
}

void WorkQueue::loop() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    try {
      job->run();
      job->done.set_value();
    } catch (const std::exception& e) {
      {
        std::lock_guard<std::mutex> lock(job->mutex);
        job->error = e.what();
      }
      job->done.set_exception(std::current_exception());
    }
    std::lock_guard<std::mutex> lock(mutex_);
    busy_ = false;
  }
}

}  // namespace mgpu::train
