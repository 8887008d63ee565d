// Workers: persistent replica threads, started once, woken for each run() and joined at the end.
#include "train/Workers.h"

namespace mgpu::train {

Workers::Workers(size_t n) : errors_(n) {
  for (size_t r = 1; r < n; ++r) threads_.emplace_back([this, r] { loop(r); });
}

Workers::~Workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  start_.notify_all();
  for (auto& t : threads_) t.join();
}

std::vector<std::exception_ptr> Workers::run(const std::function<void(size_t)>& task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &task;
    errors_.assign(size(), nullptr);
    running_ = threads_.size();
    ++generation_;
  }
  start_.notify_all();
  try {
    task(0);
  } catch (...) {
    errors_[0] = std::current_exception();  // only this thread writes entry 0
  }
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return running_ == 0; });
  task_ = nullptr;
  return errors_;
}

void Workers::loop(size_t r) {
  unsigned long long seen = 0;
  while (true) {
    const std::function<void(size_t)>* task = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      start_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      task = task_;
    }
    std::exception_ptr error;
    try {
      (*task)(r);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      errors_[r] = error;
      --running_;
    }
    done_.notify_all();
  }
}

}  // namespace mgpu::train
