// The training loop: every replica runs the same steps on its shard of each global batch,
// the gradients are summed across replicas, and every replica takes the same SGD step.
#include "train/Trainer.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "data/Augment.h"             // defines: Augmenter::draw, alternating_flips, ...
#include "data/InputError.h"          // defines: InputError
#include "train/LrSchedule.h"         // defines: LrSchedule
#include "train/Replica.h"            // defines: Trainer::Replica, Trainer::EpochPlan
#include "train/Sharding.h"           // defines: shard_batch
#include "train/Signals.h"            // defines: stop_signal, StopRequested
#include "train/StepGraph.h"          // defines: StepGraph
#include "train/Teardown.h"           // defines: release_graphs_then_communicators
#include "train/Workers.h"            // defines: Workers
#include "train/comm/LocalGroup.h"    // defines: make_local_group
#include "train/comm/Reducer.h"       // defines: Reducer
#include "train/comm/SimulatedLink.h" // defines: behind_link_from_env
#include "train/files/Checkpoint.h"   // defines: generator_state
#include "train/report/History.h"     // defines: EpochStats

namespace mgpu::train {

namespace {

// Seeds for the independent random streams of a run, all derived from --seed.
constexpr uint64_t kShuffleStream = 1;
constexpr uint64_t kAugmentStream = 2;
constexpr uint64_t kFlipStream = 3;  // --flip alternating: each image's flip of the even epochs

std::string message_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

bool is_comm_error(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const CommError&) {
    return true;
  } catch (...) {
    return false;
  }
}

LrSchedule schedule_of(const TrainConfig& config) {
  LrSchedule schedule;
  schedule.base_lr = config.lr;
  schedule.epochs = config.epochs;
  schedule.power = config.power;
  schedule.name = config.schedule;
  schedule.milestones = config.milestones;
  schedule.gamma = config.gamma;
  schedule.warmup_epochs = config.warmup_epochs;
  schedule.knots = config.lr_knots;
  return schedule;
}

// --cuda-graphs: every replica on a GPU, behind a communicator whose collectives a graph can
// capture.
void check_capturable(const std::vector<torch::Device>& devices,
                      const std::vector<std::unique_ptr<Communicator>>& comms) {
  for (const auto& d : devices) {
    if (!d.is_cuda()) {
      throw data::InputError("--cuda-graphs needs GPUs (--gpus 1 or more): CPU training has "
                             "no CUDA graphs");
    }
  }
  for (const auto& c : comms) {
    if (!c->can_capture()) {
      throw data::InputError(fmt::format(
          "--cuda-graphs cannot capture the {} communicator's all-reduce; use NCCL (--comm "
          "nccl or auto)",
          c->backend()));
    }
  }
}

void check_every_group_takes_a_parameter(const TrainConfig& config,
                                         const std::vector<int>& group_of) {
  for (size_t g = 0; g < config.param_groups.size(); ++g) {
    if (std::find(group_of.begin(), group_of.end(), static_cast<int>(g)) == group_of.end()) {
      throw data::InputError(fmt::format(
          "--param-group '{}': no parameter of the model has a name containing '{}' that an "
          "earlier group did not take (the names are those of mgpu export's state_dict)",
          config.param_groups[g].pattern, config.param_groups[g].pattern));
    }
  }
}

BucketOptions bucket_options(const TrainConfig& config) {
  return {config.bucket_mb, /*first_bucket_mb=*/1, config.overlap,
          config.comm_dtype == "bf16"   ? torch::kBFloat16
          : config.comm_dtype == "fp16" ? torch::kHalf
                                        : torch::kFloat};
}

// What fit() refuses in this run's settings for these images and steps ("" for nothing).
std::string refusal_of_run(const TrainConfig& config, const data::Dataset& train, int64_t steps,
                           int64_t total_steps) {
  const int64_t side = std::min(train.images.size(2), train.images.size(3));
  if (config.translate >= side) {  // a reflection reaches one image's width at most
    return fmt::format(
        "--translate {}: the images are {}x{}, and a shift with reflected borders must be "
        "smaller than the image (at most {})",
        config.translate, train.images.size(2), train.images.size(3), side - 1);
  }
  if (config.lookahead >= total_steps) {  // it would end on (nearly) its first weights
    return fmt::format(
        "--lookahead {}: this run has {} steps ({} an epoch), so its weights would move to the "
        "average at most once, at the end, and it would end on (nearly) its initial weights; "
        "give --lookahead below {} (or train longer)",
        config.lookahead, total_steps, steps, total_steps);
  }
  return "";
}

}  // namespace

Trainer::Trainer(const TrainConfig& config, torch::nn::AnyModule model, torch::Device device,
                 const torch::Tensor& mean)
    : Trainer(config, std::move(model), std::vector<torch::Device>{device}, mean) {}

Trainer::Trainer(const TrainConfig& config, torch::nn::AnyModule model,
                 std::vector<torch::Device> devices, const torch::Tensor& mean,
                 std::vector<std::unique_ptr<Communicator>> comms)
    : config_(config),
      schedule_(schedule_of(config)),
      shuffle_(at::detail::createCPUGenerator(config.seed + kShuffleStream)),
      augment_(at::detail::createCPUGenerator(config.seed + kAugmentStream)) {
  const int n = static_cast<int>(devices.size());
  TORCH_CHECK(n >= 1, "Trainer needs at least one device");
  if (comms.empty() && n > 1) {
    comms = make_local_group(n, std::chrono::milliseconds(
                                    static_cast<int64_t>(config.comm_timeout_s * 1000)));
  }
  TORCH_CHECK(comms.empty() || static_cast<int>(comms.size()) == n,
              "Trainer: one communicator per replica expected");
  comms = behind_link_from_env(std::move(comms));
  if (config.cuda_graphs) {
    check_capturable(devices, comms);
    config_.fused_sgd = true;  // the captured step reads its rate from the device
  }
  // With float16 the step is skipped on the device when the gradients overflow: fused SGD's.
  if (config.amp == "fp16") config_.fused_sgd = true;
  model.ptr()->to(devices[0]);
  for (int r = 0; r < n; ++r) {
    replicas_.push_back(
        make_replica(r, model, devices[r], mean, comms.empty() ? nullptr : std::move(comms[r])));
  }
  workers_ = std::make_unique<Workers>(replicas_.size());
  if (config.lr_scaling == "linear") {
    schedule_.scale = static_cast<double>(world_size() * config.accumulate);
  }
  // The step reads the rate as a float32.
  if (schedule_.base_lr * schedule_.scale > std::numeric_limits<float>::max()) {
    throw data::InputError(fmt::format(
        "--lr {} with --lr-scaling linear gives a rate of {}, more than a float32 holds ({})",
        config.lr, schedule_.base_lr * schedule_.scale, std::numeric_limits<float>::max()));
  }
}

std::unique_ptr<Trainer::Replica> Trainer::make_replica(int rank,
                                                        const torch::nn::AnyModule& model,
                                                        torch::Device device,
                                                        const torch::Tensor& mean,
                                                        std::unique_ptr<Communicator> comm) {
  auto replica = std::make_unique<Replica>();
  replica->rank = rank;
  replica->device = device;
  replica->model = rank == 0 ? model : model.clone(device);  // all start from replica 0
  if (rank > 0) {
    // clone() rebuilds each submodule from its own reset(), which knows nothing of a
    // parameter frozen by its parent: the copies keep replica 0's.
    const auto from = model.ptr()->parameters(), to = replica->model.ptr()->parameters();
    for (size_t i = 0; i < from.size(); ++i) to[i].requires_grad_(from[i].requires_grad());
  }
  replica->mean = mean.to(device);
  replica->comm = std::move(comm);
  const auto on_device = torch::TensorOptions().device(device);
  replica->lr = torch::full({}, config_.lr, on_device);
  replica->step_number = torch::zeros({}, on_device.dtype(torch::kInt64));
  replica->first_row = torch::zeros({}, on_device.dtype(torch::kInt64));
  replica->stop_flag = torch::zeros({}, on_device);
  replica->first_bad = torch::full({}, -1, on_device.dtype(torch::kInt64));
  replica->loss_sum = torch::zeros({}, on_device);
  replica->correct = torch::zeros({}, on_device.dtype(torch::kInt64));
  if (config_.amp == "fp16") {
    replica->loss_scale = torch::full({}, config_.loss_scale, on_device);
    replica->growth_tracker = torch::zeros({}, on_device.dtype(torch::kInt32));
    replica->found_inf = torch::zeros({}, on_device);
  }
  replica->group_of = assign_groups(config_, *replica->model.ptr());
  if (rank == 0) check_every_group_takes_a_parameter(config_, replica->group_of);
  bind_parameters(*replica);
  if (replica->comm) {  // the gradients' all-reduce, bucket by bucket; the 2 control words last
    replica->reducer = std::make_unique<Reducer>(replica->model.ptr()->parameters(),
                                                 replica->grads, 2, *replica->comm,
                                                 bucket_options(config_));
  }
  // --accumulate K: micro-batch k keeps running statistics of its own, as replica k would.
  for (int64_t k = 0; k < config_.accumulate && config_.accumulate > 1; ++k) {
    std::vector<torch::Tensor> set;
    for (const auto& b : replica->model.ptr()->buffers()) set.push_back(b.detach().clone());
    replica->stat_sets.push_back(std::move(set));
  }
  if (!config_.fused_sgd) make_optimizer(*replica);
  if (config_.cuda_graphs) replica->graph = std::make_unique<StepGraph>(device);
  return replica;
}

// The reducers and then the graphs go before the communicators they use (train/Teardown.h),
// whether the run ended or failed; then the members: the worker threads (idle), the replicas.
Trainer::~Trainer() {
  for (auto& r : replicas_) r->reducer.reset();  // its hooks and collectives use the comm
  release_graphs_then_communicators(replicas_);
}

int64_t Trainer::world_size() const {
  return replicas_[0]->comm ? replicas_[0]->comm->world_size() : 1;
}

int64_t Trainer::global_batch() const {
  return config_.batch_per_device * world_size() * config_.accumulate;
}

torch::nn::AnyModule& Trainer::model(int64_t r) { return replicas_.at(r)->model; }

double Trainer::loss_scale() const {
  const auto& scale = replicas_[0]->loss_scale;
  return scale.defined() ? scale.item<double>() : 0.0;
}

void Trainer::set_loss_scale(double scale, int64_t replica) {
  for (auto& r : replicas_) {
    if (r->loss_scale.defined() && (replica < 0 || r->rank == replica)) r->loss_scale.fill_(scale);
  }
}

void Trainer::for_each_replica(const std::function<void(Replica&)>& f) {
  const auto errors = workers_->run([&](size_t r) {
    try {
      c10::DeviceGuard device_guard(replicas_[r]->device);
      f(*replicas_[r]);
    } catch (...) {
      if (replicas_[r]->comm) replicas_[r]->comm->abort(message_of(std::current_exception()));
      throw;
    }
  });
  // Report the cause, not the peers that were aborted because of it.
  for (const auto& e : errors) {
    if (e && !is_comm_error(e)) std::rethrow_exception(e);
  }
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

std::vector<Shard> Trainer::local_shards(const Replica& replica) const {
  // Micro-batch k of replica r is shard k * world + r: one replica with --accumulate N sees
  // exactly the micro-batches that N replicas see in one step.
  const int64_t world = world_size(), rank = replica.comm ? replica.comm->rank() : 0;
  const auto shards = shard_batch(global_batch(), world * config_.accumulate);
  std::vector<Shard> local;
  for (int64_t k = 0; k < config_.accumulate; ++k) local.push_back(shards[k * world + rank]);
  return local;
}

void Trainer::place_data(const data::Dataset& train, const data::Dataset& test) {
  // The whole uint8 data set lives on each training device, copied there once.
  std::map<std::string, std::pair<data::Dataset, data::Dataset>> on_device;
  for (auto& r : replicas_) {
    auto& copies = on_device[r->device.str()];
    if (!copies.first.images.defined()) {
      copies = {{train.images.to(r->device), train.labels.to(r->device)},
                {test.images.to(r->device), test.labels.to(r->device)}};
    }
    std::tie(r->train, r->test) = copies;
  }
}

Trainer::EpochPlan Trainer::plan_epoch(int64_t epoch, int64_t steps, int64_t full_steps,
                                       const data::Dataset& train) {
  // A permutation of the images (repeated if the steps need more), and augmentation draws.
  const int64_t n = steps * global_batch();
  const auto& shape = train.images.sizes();
  EpochPlan plan;
  plan.epoch = epoch;
  plan.steps = steps;
  plan.full_steps = full_steps;
  std::vector<torch::Tensor> orders;
  for (int64_t have = 0; have < n; have += train.size()) {
    orders.push_back(config_.shuffle ? torch::randperm(train.size(), shuffle_)
                                     : torch::arange(train.size(), torch::kInt64));
  }
  const auto order = torch::cat(orders).narrow(0, 0, n);
  auto draw = data::Augmenter::draw(data::AugmentOptions{}, augment_, n, shape[2], shape[3]);
  if (config_.translate > 0) {  // airbench's crop, with reflected borders (Step.cpp)
    draw.dx = data::uniform_shifts(n, config_.translate, augment_);
    draw.dy = data::uniform_shifts(n, config_.translate, augment_);
  }
  if (config_.flip == "alternating") {
    draw.flip = data::alternating_flips(config_.seed + kFlipStream, train.size(), order, epoch);
  } else if (config_.flip == "none") {
    draw.flip.zero_();
  }
  if (!config_.augment) {
    draw.dx.zero_();
    draw.dy.zero_();
    draw.flip.zero_();
  }
  plan.rows = torch::stack({order, draw.dx, draw.dy, draw.flip.to(torch::kInt64)}, 1);
  return plan;
}

void Trainer::train_steps(const data::Dataset& train, int64_t steps) {
  if (steps <= 0) return;
  if (!replicas_[0]->train.images.defined()) place_data(train, train.first(1));
  EpochPlan plan = plan_epoch(0, steps, steps, train);
  plan.total_steps = steps;
  for_each_replica([&](Replica& r) {
    if (config_.lookahead > 0 && r.average.empty()) start_lookahead(r);
    run_epoch(r, plan, nullptr, 1);
    if (r.device.is_cuda()) torch::cuda::synchronize(r.device.index());
  });
}
History Trainer::fit(const data::Dataset& train, const data::Dataset& test, Progress& progress,
                     const std::function<void(const History&)>& on_epoch) {
  using Clock = std::chrono::steady_clock;
  const int64_t batch = global_batch();
  // Full batches only. Keras's generator yields a smaller last batch at the end of each pass
  // through the data; mgpu has none (a difference from the tutorial, issue 13).
  const int64_t steps = train.size() / batch;
  if (steps == 0) {
    throw data::InputError(fmt::format(
        "the training set has {} images, fewer than one global batch of {} (see --limit-train, "
        "--batch-per-device, --accumulate and the replica count)",
        train.size(), batch));
  }
  // A fractional --epochs ends part way through its last epoch, after ceil(steps x epochs) steps.
  const int64_t total_steps = run_steps(steps, config_.epochs);
  // Refused through the start's agreement, so that every process of a job stops together.
  const std::string refusal = refusal_of_run(config_, train, steps, total_steps);
  const int64_t epochs = (total_steps + steps - 1) / steps;
  if (!agreed_) {
    agree_on_start(refusal);
  } else if (!refusal.empty()) {
    throw data::InputError(refusal);
  }
  place_data(train, test);
  // A fresh run starts every replica from rank 0's weights; a resumed one has restored each
  // replica's own state (its batch-norm statistics differ from the others' mid-epoch).
  if (!resumed_) {
    for_each_replica([&](Replica& r) {
      broadcast_weights(r);
      if (config_.lookahead > 0) start_lookahead(r);
    });
  }
  for (int64_t epoch = start_epoch_; epoch < epochs; ++epoch) {
    const int64_t epoch_steps = std::min(steps, total_steps - epoch * steps);
    const auto start = Clock::now();
    epoch_started_ = start;
    const int64_t first_step = epoch == start_epoch_ ? start_step_ + 1 : 1;
    if (first_step == 1) epoch_earlier_seconds_ = 0;
    // A resumed epoch redraws its plan from the generators' states before it.
    epoch_shuffle_state_ = generator_state(shuffle_);
    epoch_augment_state_ = generator_state(augment_);
    EpochPlan plan = plan_epoch(epoch, epoch_steps, steps, train);
    plan.total_steps = total_steps;
    progress.epoch_begin(epoch + 1, epochs, epoch_steps);
    for_each_replica([&](Replica& r) {
      run_epoch(r, plan, r.rank == 0 ? &progress : nullptr, first_step);
    });
    history_.push_back(end_epoch(epoch, epoch_steps, first_step, start, test, progress));
    progress.epoch_end(history_.back());
    if (on_epoch) on_epoch(history_);
    for_each_replica([&](Replica& r) { write_checkpoint(r, epoch + 1, 0); });
  }
  start_epoch_ = epochs;
  start_step_ = 0;
  return history_;
}

EpochStats Trainer::end_epoch(int64_t epoch, int64_t epoch_steps, int64_t first_step,
                              std::chrono::steady_clock::time_point start,
                              const data::Dataset& test, Progress& progress) {
  using Clock = std::chrono::steady_clock;
  const int64_t batch = global_batch();
  const Replica& lead = *replicas_[0];
  const double images = static_cast<double>(epoch_steps * batch);
  EpochStats stats;
  stats.epoch = epoch + 1;
  // The rate the epoch's first step took (a resumed epoch's was taken in an earlier part).
  stats.lr = first_step > 1 ? rate_at_epoch_start(epoch) : first_step_lr_;
  stats.loss = lead.loss_sum.item<double>() / images;  // the same on every replica
  stats.acc = static_cast<double>(lead.correct.item<int64_t>()) / images;
  const double epoch_train_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double epoch_images = static_cast<double>((epoch_steps - first_step + 1) * batch);
  train_seconds_ += epoch_train_seconds;
  train_images_ += epoch_images;
  epoch_images_per_second_ = epoch_train_seconds > 0 ? epoch_images / epoch_train_seconds : 0;
  // On the copy of the test set that place_data left on each device.
  progress.evaluating(test.size());
  for_each_replica([&](Replica& r) { r.val = evaluate_replica(r, r.test); });
  const Metrics val = replicas_[0]->val;
  stats.val_loss = val.loss;
  stats.val_acc = val.acc;
  stats.seconds =
      epoch_earlier_seconds_ + std::chrono::duration<double>(Clock::now() - start).count();
  return stats;
}

}  // namespace mgpu::train
