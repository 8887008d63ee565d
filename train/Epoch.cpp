// One replica's epoch (Trainer::run_epoch): each step's rate and device values, the step
// queued eagerly or from a CUDA graph, and what is read back after it and when (the fault, the
// stop request, the progress bar's and the per-step log's figures, periodic checkpoints).
#include "train/Trainer.h"

#include <fmt/core.h>

#include <chrono>
#include <optional>

#include "train/Replica.h"          // defines: Trainer::Replica, Trainer::EpochPlan
#include "train/Signals.h"          // defines: stop_signal, signal_name, StopRequested
#include "train/StepGraph.h"        // defines: StepGraph
#include "train/comm/Reducer.h"     // defines: Reducer

namespace mgpu::train {

namespace {

// With a GPU, the steps between two reads of the stop request and the fault flag.
constexpr int64_t kStepsBetweenChecks = 16;

}  // namespace

void Trainer::run_epoch(Replica& replica, const EpochPlan& plan, Progress* progress,
                        int64_t first_step) {
  auto& module = *replica.model.ptr();
  module.train();
  const int64_t batch = global_batch();
  const auto rows = plan.rows.to(replica.device);
  int64_t local_per_step = 0;
  for (const Shard& shard : local_shards(replica)) local_per_step += shard.size;

  if (first_step == 1) {  // else resume() restored the sums of the steps before
    replica.loss_sum.zero_();
    replica.correct.zero_();
  }
  replica.first_bad.fill_(-1);
  if (&replica == replicas_.front().get()) step_times_ = StepTimes{};
  std::optional<StepGraph::Scope> on_graph_stream;
  if (replica.graph) on_graph_stream.emplace(*replica.graph);
  for (int64_t step = first_step; step <= plan.steps; ++step) {
    const double lr = begin_step(replica, plan, step);
    queue_step(replica, rows.narrow(0, (step - 1) * batch, batch));
    lookahead(replica, plan.epoch * plan.full_steps + step, plan.total_steps);
    end_step(replica, plan, step, lr, progress, local_per_step);
  }
  on_graph_stream.reset();
  replica.in_flight.clear();  // the blocking all-reduces below wait for every step
  if (replica.comm) {
    replica.comm->all_reduce_sum(replica.loss_sum);
    replica.comm->all_reduce_sum(replica.correct);
  }
}

double Trainer::begin_step(Replica& replica, const EpochPlan& plan, int64_t step) {
  const double lr = schedule_.at(plan.epoch, static_cast<double>(step - 1) / plan.full_steps);
  if (step == 1 && &replica == replicas_.front().get()) first_step_lr_ = lr;  // the history's
  set_rates(replica, plan.epoch, lr);
  replica.step_number.fill_(step);
  replica.first_row.fill_((plan.epoch * plan.full_steps + step - 1) * global_batch());
  replica.stop_flag.fill_(stop_signal() != 0 ? 1.0 : 0.0);
  return lr;
}

void Trainer::queue_step(Replica& replica, const torch::Tensor& batch_plan) {
  const auto step_start = std::chrono::steady_clock::now();
  bound_steps_in_flight(replica);
  const bool replayed = replica.graph && (replica.graph->captured() ||
                                          replica.eager_steps >= kEagerStepsBeforeCapture);
  if (!replica.graph) {
    train_step(replica, batch_plan);
  } else if (replica.graph->captured()) {
    replica.graph_batch.copy_(batch_plan);
    replica.graph->replay();
    if (replica.comm) replica.comm->watch_enqueued("all_reduce (CUDA graph replay)");
  } else if (++replica.eager_steps <= kEagerStepsBeforeCapture) {
    train_step(replica, batch_plan);
  } else {  // capture this step (capturing runs nothing), then replay it
    replica.graph_batch = batch_plan.clone();
    replica.graph->capture([&] { train_step(replica, replica.graph_batch); });
    replica.graph->replay();
    if (replica.comm) replica.comm->watch_enqueued("all_reduce (CUDA graph replay)");
  }
  if (&replica == replicas_.front().get()) {
    step_times_.step_ms.push_back(std::chrono::duration<double, std::milli>(
                                      std::chrono::steady_clock::now() - step_start)
                                      .count());
    if (!replayed) {  // a replay runs no backward pass on the host
      step_times_.backward_ms.push_back(replica.backward_ms);
      if (replica.reducer) step_times_.communication = replica.reducer->timeline();
    }
  }
}

void Trainer::end_step(Replica& replica, const EpochPlan& plan, int64_t step, double lr,
                       Progress* progress, int64_t local_per_step) {
  if (replica.comm) {  // the end of this step's work on the device (bound_steps_in_flight)
    if (auto end = replica.comm->mark_enqueued("the training step")) {
      replica.in_flight.push_back(std::move(end));
    }
  }
  const int64_t global_step = plan.epoch * plan.full_steps + step;
  const bool lead = &replica == replicas_.front().get();
  const bool due = progress && progress->due(step);
  const bool logged = lead && log_sink_ && log_every_ > 0 && global_step % log_every_ == 0;
  const bool periodic = checkpoints_.every_steps > 0 && !checkpoints_.dir.empty() &&
                        global_step % checkpoints_.every_steps == 0 && step < plan.steps;
  // Reading a device value makes the host wait for the device, so on a GPU only every
  // kStepsBetweenChecks steps, at checkpoints and at the epoch's end (and for the progress
  // bar and the log, at most when they are due). With peers, the stop request and the fault
  // are read on the same steps everywhere, so that all agree; a dead peer fails that wait,
  // never hangs it.
  const bool check = !replica.device.is_cuda() || step % kStepsBetweenChecks == 0 || periodic ||
                     step == plan.steps;
  if (replica.comm && replica.device.is_cuda() && (check || due || logged)) {
    replica.comm->wait_for_enqueued("the training step's collectives");
    replica.in_flight.clear();  // all finished
  }
  bool stop = stop_signal() != 0;
  if (replica.comm) stop = check && replica.control[0].item<double>() > 0;
  if (check || ((due || logged) && !replica.comm)) throw_if_non_finite(replica, plan);
  const double seen = static_cast<double>(step * local_per_step);  // this replica's images
  if (due) {  // this replica's running figures, read at most 10/s
    progress->update(step, replica.loss_sum.item<double>() / seen,
                     static_cast<double>(replica.correct.item<int64_t>()) / seen);
  }
  if (logged) log_step(replica, plan.epoch, global_step, lr, seen);
  if (lead && log_sink_ && log_every_ > 0 && step == plan.steps) {
    carry_log_window(replica, plan.epoch, seen);
  }
  if (stop || periodic) write_checkpoint(replica, plan.epoch, step);
  if (stop) {
    throw StopRequested(fmt::format(
        "stopped by {} in epoch {} after step {}; checkpoint {} (continue with --resume auto "
        "and the same --out-dir)",
        stop_signal() ? signal_name(stop_signal()) : "another process's stop request",
        plan.epoch + 1, step,
        saved_.empty() ? "none (this run writes none)" : describe(saved_.back())));
  }
}

void Trainer::throw_if_non_finite(Replica& replica, const EpochPlan& plan) const {
  if (const int64_t bad = replica.first_bad.item<int64_t>(); bad >= 0) {
    throw std::runtime_error(fmt::format(
        "the training loss or gradient became non-finite in epoch {} at step {}; stopping. {}",
        plan.epoch + 1, bad,
        non_finite_advice(plan.epoch * plan.full_steps + bad, plan.full_steps)));
  }
}

void Trainer::log_step(Replica& replica, int64_t epoch, int64_t global_step, double lr,
                       double seen) {
  const double sum = replica.loss_sum.item<double>();  // over the epoch's steps so far
  if (epoch != logged_epoch_) {  // the sums restarted; the last epoch's tail comes along
    logged_loss_sum_ = -carried_loss_sum_;
    logged_images_ = -carried_images_;
    carried_loss_sum_ = carried_images_ = 0;
  }
  logged_epoch_ = epoch;
  StepLog log;
  log.step = global_step;
  log.loss = (sum - logged_loss_sum_) / (seen - logged_images_);
  log.lr = lr;
  log.loss_scale = config_.amp == "fp16" ? loss_scale() : 0;
  logged_loss_sum_ = sum;
  logged_images_ = seen;
  log_sink_(log);
}

void Trainer::carry_log_window(Replica& replica, int64_t epoch, double seen) {
  const double sum = replica.loss_sum.item<double>();
  if (epoch == logged_epoch_) {  // since the epoch's last point
    carried_loss_sum_ = sum - logged_loss_sum_;
    carried_images_ = seen - logged_images_;
  } else {  // no point in this epoch: all of it, and what came before
    carried_loss_sum_ += sum;
    carried_images_ += seen;
  }
}

void Trainer::bound_steps_in_flight(Replica& replica) {
  while (replica.in_flight.size() >= kStepsInFlight) {
    replica.comm->wait_for_mark(*replica.in_flight.front());
    replica.in_flight.pop_front();
  }
}

}  // namespace mgpu::train
