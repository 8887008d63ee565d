// Workers: one thread per replica for the whole run. LibTorch keeps per-thread state that a
// step relies on (cuDNN's plan and autotuning cache is thread-local), so a replica's work must
// run on the same thread in every epoch, evaluation, checkpoint and broadcast.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mgpu::train {

class Workers {
 public:
  /// n replicas: replica 0 runs on the thread that calls run(), replicas 1..n-1 each on a
  /// thread of its own, started here and kept until destruction.
  explicit Workers(size_t n);
  ~Workers();  // waits for the threads to finish (run() has returned by then)
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  /// Calls task(r) for every replica r at once, each on its own thread, and returns when all
  /// have returned: each one's exception, or nullptr. Not reentrant: one run() at a time.
  std::vector<std::exception_ptr> run(const std::function<void(size_t)>& task);

  size_t size() const { return threads_.size() + 1; }

 private:
  void loop(size_t r);

  std::mutex mutex_;
  std::condition_variable start_, done_;
  const std::function<void(size_t)>* task_ = nullptr;  // the current run's, while one runs
  unsigned long long generation_ = 0;                   // run() calls so far
  size_t running_ = 0;                                   // workers not done with this run
  bool stopping_ = false;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> threads_;  // replicas 1..n-1
};

}  // namespace mgpu::train
