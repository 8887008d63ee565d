// Trainer: the tutorial's training loop over one or more data-parallel replicas (threads of
// this process, one per device), kept identical by a gradient all-reduce every step.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "data/Dataset.h"
#include "train/files/Checkpoint.h"
#include "train/comm/Communicator.h"
#include "train/comm/Reducer.h"  // defines: StepTimeline
#include "train/report/History.h"
#include "train/LrSchedule.h"
#include "train/report/Progress.h"
#include "train/Sharding.h"
#include "train/TrainConfig.h"

namespace mgpu::train {

struct Metrics {
  double loss = 0;  // mean cross-entropy per image
  double acc = 0;   // fraction correct
};

/// A resume that lowered the learning rate (the remedy for a non-finite loss): from the
/// position of the checkpoint on (epochs completed, steps of the next one), the schedule
/// follows the new base rate.
struct LrChange {
  int64_t epoch = 0, step = 0;
  double from = 0, to = 0;  // --lr before and after
};

/// What resume() found that the caller may want to tell.
struct Resumed {
  int64_t epoch = 0, step = 0;  // the checkpoint's position: epochs completed, steps after them
  std::optional<LrChange> lr_lowered;  // the rate this resume lowered, if it did
  int64_t threads = 0;  // LibTorch threads of the part that wrote it (0: not recorded)
};

class Workers;

/// A training step's figures for a log (TensorBoard's per-step scalars).
struct StepLog {
  int64_t step = 0;       // global over the run, 1-based
  double loss = 0;        // replica 0's (of rank 0) mean loss per image over the steps since
                          // the last point (after a resume: since its checkpoint)
  double lr = 0;          // the step's rate
  double loss_scale = 0;  // --amp fp16's after the step, else 0
};

/// With --cuda-graphs, the steps run eagerly before the capture (cuDNN autotuning, lazy
/// initialisation and the allocator settle first); the next step is captured and replayed.
inline constexpr int64_t kEagerStepsBeforeCapture = 3;

/// With peers, the steps a replica may have queued on its device and not yet finished: before
/// queueing step N the host waits for step N - kStepsInFlight to finish (polling the group's
/// failure and deadline), so that it never blocks inside a kernel launch behind a full launch
/// queue, where a dead peer would hang it. A step stays queued ahead, so the device never idles.
inline constexpr size_t kStepsInFlight = 2;

class Trainer {
 public:
  /// model: any module whose forward maps [B, C, H, W] float to [B, classes] logits; replica 0
  /// is model itself (moved to devices[0]), replica r a deep copy on devices[r].
  /// mean: the training set's mean image [C, H, W], subtracted from every batch.
  /// comms: one communicator per replica (rank r for replica r); may be empty for one replica.
  Trainer(const TrainConfig& config, torch::nn::AnyModule model, std::vector<torch::Device> devices,
          const torch::Tensor& mean, std::vector<std::unique_ptr<Communicator>> comms = {});
  /// One replica on one device.
  Trainer(const TrainConfig& config, torch::nn::AnyModule model, torch::Device device,
          const torch::Tensor& mean);
  ~Trainer();

  /// Trains config.epochs epochs (from where resume() left off); after each, evaluates on
  /// test, calls on_epoch with the history so far, and writes a checkpoint if set_checkpoints
  /// asked for them. Throws std::runtime_error if a loss or gradient becomes non-finite, and
  /// StopRequested after a requested stop's checkpoint (train/Signals.h). All replicas, in
  /// every process, stop at the same step.
  History fit(const data::Dataset& train, const data::Dataset& test, Progress& progress,
              const std::function<void(const History&)>& on_epoch = {});

  /// Checkpoints: the whole training state at every epoch's end and every policy.every_steps
  /// steps, written by the writer process only, durably (train/History.h).
  void set_checkpoints(const CheckpointPolicy& policy) { checkpoints_ = policy; }
  /// Calls sink with the figures of every `every`-th global step (from replica 0, in this
  /// process, on the thread that called fit()); every 0 or an empty sink logs nothing.
  void log_steps(int64_t every, std::function<void(const StepLog&)> sink) {
    log_every_ = every;
    log_sink_ = std::move(sink);
  }
  /// Loads a checkpoint written with the same fingerprint (set_checkpoints first); fit() then
  /// continues after its epoch and step and ends as the uninterrupted run would have. The
  /// learning rate (config.lr) may be lower than the checkpoint's, never higher: that change is
  /// returned, and kept in lr_changes() and every later checkpoint. Throws data::InputError
  /// naming the file and what differs or is damaged.
  Resumed resume(const std::filesystem::path& file);
  /// Before the first step of a job of several processes, every process tells the others what
  /// it starts from: the run's fingerprint (model, data set sizes, world size, recipe), rate and
  /// gradient buckets, the checkpoint and position it resumes from or a fresh start, and
  /// `refusal`, why it cannot start (a checkpoint it refused), if it cannot. When they differ,
  /// or one refused, every rank throws data::InputError naming the rank and what differs,
  /// within the time peers take to get there. fit() calls it unless the caller did. With one process it only throws
  /// refusal, if given.
  void agree_on_start(const std::string& refusal = {});
  /// Before resume(), in a job of several processes (every process calls it): the newest
  /// checkpoint any rank resumes from (`mine`: by name, that is by epoch and step; the first
  /// rank's of those that have it) goes to every rank that has no such file, or one with other
  /// bytes (nodes that share no folder), which writes it atomically into `dir` under the same
  /// name. Returns the checkpoint this process resumes from: `mine`, or the copy it wrote.
  /// Where no rank has one it changes nothing; a process started without --resume takes no
  /// copy. `sent` says what went where, if anything did.
  std::optional<std::filesystem::path> share_checkpoint(
      const std::optional<std::filesystem::path>& mine, const std::filesystem::path& dir,
      std::string* sent = nullptr);
  /// Every lowering of the learning rate by a resume, over all parts of the run, oldest first.
  const std::vector<LrChange>& lr_changes() const { return lr_changes_; }
  /// The last checkpoint written or resumed from (empty if none); in a process other than
  /// rank 0's, the one rank 0 wrote, at the same place under this process's --out-dir.
  std::filesystem::path last_checkpoint() const;

  /// Runs `steps` training steps (no evaluation) on random batches of train and waits for the
  /// devices: what `mgpu bench` times.
  void train_steps(const data::Dataset& train, int64_t steps);

  /// Loss and accuracy on a data set, split across the replicas, in eval mode, after the
  /// replicas' batch-norm statistics have been averaged.
  Metrics evaluate(const data::Dataset& dataset);

  /// Global batch of one optimizer step: batch_per_device x world_size x accumulate.
  int64_t global_batch() const;
  /// Replicas in this process.
  int64_t replicas() const { return static_cast<int64_t>(replicas_.size()); }
  /// Replicas in the whole job (all processes).
  int64_t world_size() const;
  /// The learning-rate schedule in force (scaled by the global batch with --lr-scaling linear).
  const LrSchedule& schedule() const { return schedule_; }
  /// Replica r's model (0 is the one that is saved).
  torch::nn::AnyModule& model(int64_t r = 0);
  /// Wall time of the whole run so far: the earlier parts up to their last checkpoint, and
  /// this part since policy.started (set_checkpoints).
  double run_seconds() const;
  /// --amp fp16: replica 0's loss scale now (0 in other precisions); reads the device.
  double loss_scale() const;
  /// --amp fp16: sets the loss scale of every replica (replica < 0) or of one; the tests use
  /// it to make a step overflow.
  void set_loss_scale(double scale, int64_t replica = -1);
  /// This process's replica 0 in the last epoch or train_steps(): per step the host's wall
  /// milliseconds, and per eager step (not a CUDA graph's replay) those of its backward passes;
  /// with peers, the last eager step's communication.
  /// (On a GPU the host's clock times the queueing, not the device.)
  struct StepTimes {
    std::vector<double> step_ms, backward_ms;
    StepTimeline communication;
  };
  const StepTimes& step_times() const { return step_times_; }
  /// Training images per second over all epochs so far (training steps only, no evaluation).
  double images_per_second() const { return train_seconds_ > 0 ? train_images_ / train_seconds_ : 0; }
  /// The same over the last epoch's steps in this part of the run.
  double epoch_images_per_second() const { return epoch_images_per_second_; }

 private:
  struct Replica;
  struct EpochPlan;
  /// Replica `rank` of model on device: its own copy (replica 0 keeps model), the device
  /// values its step reads and writes, its parameter groups, flat buffers, reducer, micro-batch
  /// statistics, optimizer and graph.
  std::unique_ptr<Replica> make_replica(int rank, const torch::nn::AnyModule& model,
                                        torch::Device device, const torch::Tensor& mean,
                                        std::unique_ptr<Communicator> comm);
  /// After an epoch's steps (first_step..epoch_steps, begun at start): its training figures,
  /// the evaluation on test, the history, the callback's epoch end and the checkpoint.
  EpochStats end_epoch(int64_t epoch, int64_t epoch_steps, int64_t first_step,
                       std::chrono::steady_clock::time_point start, const data::Dataset& test,
                       Progress& progress);
  /// Steps first_step..plan.steps (1-based) of an epoch.
  void run_epoch(Replica& replica, const EpochPlan& plan, Progress* progress, int64_t first_step);
  /// A step's rate (returned) and the device values it reads: step number, rows, stop request.
  double begin_step(Replica& replica, const EpochPlan& plan, int64_t step);
  /// Queues the step on the device: eagerly, or captured into and replayed from a CUDA graph;
  /// replica 0 records its times.
  void queue_step(Replica& replica, const torch::Tensor& batch_plan);
  /// After the step is queued: what is read back and when (the fault, the stop request, the
  /// bar's and the log's figures), the periodic checkpoint, and a requested stop.
  void end_step(Replica& replica, const EpochPlan& plan, int64_t step, double lr,
                Progress* progress, int64_t local_per_step);
  /// Throws, with the checkpoint to continue from, if a step's loss or gradient was not finite.
  void throw_if_non_finite(Replica& replica, const EpochPlan& plan) const;
  /// Hands log_sink_ global_step's figures; seen: images replica 0 trained in epoch (0-based)
  /// so far.
  void log_step(Replica& replica, int64_t epoch, int64_t global_step, double lr, double seen);
  /// At an epoch's last step: the steps since its last logged point go into the next point.
  void carry_log_window(Replica& replica, int64_t epoch, double seen);
  /// Waits (Communicator::wait_for_mark) until fewer than kStepsInFlight of the replica's steps
  /// are queued and unfinished; throws CommError when the group fails first.
  void bound_steps_in_flight(Replica& replica);
  /// One optimizer step on this replica's shards of a global batch (rows of image index, dx,
  /// dy, flip), reading the rate, step number and stop flag from the replica's device
  /// tensors: device work only, nothing read back, so that a CUDA graph can capture it.
  void train_step(Replica& replica, const torch::Tensor& batch_plan);
  /// A micro-batch of the step (rows of the batch plan): forward, loss, the replica's running
  /// figures, and the backward pass, weighted by the rows' share of the global batch; the last
  /// one sets the control words and arms the reducer first. step_loss sums the losses.
  void micro_batch(Replica& replica, const torch::Tensor& rows, int64_t first_row, bool last,
                   torch::Tensor& step_loss);
  /// Every parameter in the configured memory format, a view into one flat buffer with the
  /// fused optimizer, and its gradient a view of the same layout into the gradient buffer.
  void bind_parameters(Replica& replica);
  void optimizer_step(Replica& replica);
  /// --lookahead: the average starts from the weights and batch-norm statistics now.
  void start_lookahead(Replica& replica);
  /// --lookahead K after global step (1-based) of total: every K steps the average takes in
  /// the model and the model takes the average; after the last step the model is the average.
  void lookahead(Replica& replica, int64_t step, int64_t total);
  /// torch.optim.SGD with the run's momentum, weight decay (on every parameter, or without the
  /// 1-d ones in a group of their own) and Nesterov switch, one group per --param-group; the
  /// rate is set before each step (set_rates).
  void make_optimizer(Replica& replica);
  /// The rates of the step: lr times each group's multiplier in this epoch.
  void set_rates(Replica& replica, int64_t epoch, double lr);
  /// The fused step's last part: parameters -= lr x (momentum, or Nesterov's grads + momentum).
  void update_parameters(Replica& replica, torch::Tensor& grads, const torch::Tensor& lr);
  /// --accumulate K: puts micro-batch k's running statistics into the module (k = 0 after the
  /// last micro-batch).
  void swap_statistics(Replica& replica, size_t k);
  /// A collective: every replica gives its own state, the writer's replica 0 writes the file.
  void write_checkpoint(Replica& replica, int64_t epoch, int64_t step);
  void load_checkpoint(Replica& replica, const std::filesystem::path& file);
  /// Fused SGD's momentum in the parameters' logical order, and back (any memory format).
  static torch::Tensor logical_momentum(Replica& replica);
  static void set_logical_momentum(Replica& replica, const torch::Tensor& flat);
  Metrics evaluate_replica(Replica& replica, const data::Dataset& dataset);
  void average_batch_norm_stats(Replica& replica);
  void broadcast_weights(Replica& replica);
  /// The rate at the first step of epoch (0-based) under the base rate then in force.
  double rate_at_epoch_start(int64_t epoch) const;
  /// The checkpoints written (and not pruned) or resumed from, oldest first.
  struct Saved {
    int64_t epoch = 0, step = 0;  // its position
    std::filesystem::path file;
    bool elsewhere = false;  // written by rank 0's process, not this one
  };
  /// Adds a checkpoint to saved_, which keeps as many as the policy does.
  void remember(Saved saved);
  /// A checkpoint for messages: the path, or in another process its name and writer.
  static std::string describe(const Saved& saved);
  /// What to do after a non-finite loss or gradient at global step bad_step (1-based) of a run
  /// of steps per epoch: which checkpoint can continue, if any.
  std::string non_finite_advice(int64_t bad_step, int64_t steps) const;
  /// Copies the data sets to every replica's device (once per device).
  void place_data(const data::Dataset& train, const data::Dataset& test);
  /// The plan of `steps` steps of epoch (0-based), whose whole epochs have full_steps.
  EpochPlan plan_epoch(int64_t epoch, int64_t steps, int64_t full_steps,
                       const data::Dataset& train);
  /// The shards of each global batch this replica trains on, in micro-batch order.
  std::vector<Shard> local_shards(const Replica& replica) const;
  /// Runs f(replica) for every replica, each on its own thread (replica 0 on this one), the
  /// same thread for the whole run (workers_); a failure in one aborts the group so the others
  /// stop too, and is rethrown here.
  void for_each_replica(const std::function<void(Replica&)>& f);

  TrainConfig config_;
  LrSchedule schedule_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::unique_ptr<Workers> workers_;  // one thread per replica; declared after replicas_, so
                                      // its threads end before the replicas they ran go
  torch::Generator shuffle_;  // CPU generator for the per-epoch permutation
  torch::Generator augment_;  // CPU generator for the per-epoch augmentation draws
  torch::Tensor epoch_shuffle_state_, epoch_augment_state_;  // theirs before this epoch's plan
  double train_seconds_ = 0, train_images_ = 0;
  double epoch_images_per_second_ = 0;
  int64_t log_every_ = 0;
  std::function<void(const StepLog&)> log_sink_;
  // The per-step log's window: replica 0's loss and image sums at the last point, in
  // logged_epoch_ (a resume sets them to the checkpoint's), and what an epoch's steps after its
  // last point carry into the next point.
  double logged_loss_sum_ = 0, logged_images_ = 0;
  int64_t logged_epoch_ = -1;
  double carried_loss_sum_ = 0, carried_images_ = 0;
  double earlier_seconds_ = 0;  // wall time of the parts before this one (resume())
  // The epoch in progress: when this part began it, and its seconds in earlier parts.
  std::chrono::steady_clock::time_point epoch_started_;
  double epoch_earlier_seconds_ = 0;
  History history_;
  CheckpointPolicy checkpoints_;
  std::vector<Saved> saved_;
  int64_t start_epoch_ = 0, start_step_ = 0;  // where fit() begins (after resume())
  bool resumed_ = false;                       // resume() restored every replica's state
  bool agreed_ = false;                        // agree_on_start() has run
  std::vector<LrChange> lr_changes_;
  StepTimes step_times_;
  double first_step_lr_ = 0;  // the rate the last epoch's first step took (replica 0)
};

}  // namespace mgpu::train
