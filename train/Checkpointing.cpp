// The Trainer's checkpoints: which state goes into one (every replica's row of what differs
// between replicas, the plan generators, the history, model and optimizer), and resuming from
// one so that the run ends as the uninterrupted run would have (docs/reliability.md).
#include <fmt/core.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "data/InputError.h"          // defines: InputError
#include "train/Replica.h"            // defines: Trainer::Replica
#include "train/StartAgreement.h"     // defines: start_settings, check_start_records
#include "train/comm/Communicator.h"  // defines: gather_rows
#include "train/files/Archive.h"      // defines: save_archive, load_archive
#include "train/files/Checkpoint.h"   // defines: checkpoint_path, fingerprint_number, ...

namespace mgpu::train {

namespace {

// The history at full precision (history.csv rounds), [epochs, 7] float64, and back.
torch::Tensor history_tensor(const History& history) {
  auto t = torch::zeros({static_cast<int64_t>(history.size()), 7}, torch::kFloat64);
  for (size_t i = 0; i < history.size(); ++i) {
    const auto& e = history[i];
    const double row[7] = {
        static_cast<double>(e.epoch), e.lr, e.seconds, e.loss, e.acc, e.val_loss, e.val_acc};
    for (int64_t j = 0; j < 7; ++j) t[static_cast<int64_t>(i)][j] = row[j];
  }
  return t;
}

History history_from_tensor(const torch::Tensor& t) {
  History history;
  const auto rows = t.accessor<double, 2>();
  for (int64_t i = 0; i < t.size(0); ++i) {
    history.push_back({static_cast<int64_t>(rows[i][0]), rows[i][1], rows[i][2], rows[i][3],
                       rows[i][4], rows[i][5], rows[i][6]});
  }
  return history;
}

// Rows of epoch, step, from, to (float64), and back.
torch::Tensor lr_changes_tensor(const std::vector<LrChange>& changes) {
  auto t = torch::zeros({static_cast<int64_t>(changes.size()), 4}, torch::kFloat64);
  for (size_t i = 0; i < changes.size(); ++i) {
    const auto& c = changes[i];
    t[static_cast<int64_t>(i)] = torch::tensor(
        {static_cast<double>(c.epoch), static_cast<double>(c.step), c.from, c.to}, torch::kFloat64);
  }
  return t;
}

std::vector<LrChange> lr_changes_from_tensor(const torch::Tensor& t) {
  std::vector<LrChange> changes;
  const auto rows = t.accessor<double, 2>();
  for (int64_t i = 0; i < t.size(0); ++i) {
    changes.push_back({static_cast<int64_t>(rows[i][0]), static_cast<int64_t>(rows[i][1]),
                       rows[i][2], rows[i][3]});
  }
  return changes;
}

// What differs between replicas among their buffers: the float ones (batch-norm statistics) of
// the module, then those of the other micro-batches' sets (--accumulate K).
std::vector<torch::Tensor> float_buffers(torch::nn::Module& module,
                                         const std::vector<std::vector<torch::Tensor>>& sets) {
  std::vector<torch::Tensor> found;
  for (auto& b : module.buffers()) {
    if (b.is_floating_point()) found.push_back(b);
  }
  for (size_t k = 1; k < sets.size(); ++k) {
    for (const auto& b : sets[k]) {
      if (b.is_floating_point()) found.push_back(b);
    }
  }
  return found;
}

}  // namespace

// Fused SGD's momentum buffer follows each parameter's memory format; a checkpoint holds it in
// the parameters' logical (row-major) order, so that a run may change --channels-last.
torch::Tensor Trainer::logical_momentum(Replica& replica) {
  std::vector<torch::Tensor> parts;
  int64_t offset = 0;
  for (const auto& p : replica.model.ptr()->parameters()) {
    parts.push_back(replica.momentum.narrow(0, offset, p.numel())
                        .as_strided(p.sizes(), p.strides())
                        .contiguous()
                        .flatten());
    offset += p.numel();
  }
  return torch::cat(parts);
}

void Trainer::set_logical_momentum(Replica& replica, const torch::Tensor& flat) {
  int64_t offset = 0;
  for (const auto& p : replica.model.ptr()->parameters()) {
    replica.momentum.narrow(0, offset, p.numel())
        .as_strided(p.sizes(), p.strides())
        .copy_(flat.narrow(0, offset, p.numel()).view(p.sizes()));
    offset += p.numel();
  }
}

void Trainer::write_checkpoint(Replica& replica, int64_t epoch, int64_t step) {
  if (checkpoints_.dir.empty()) return;
  torch::NoGradGuard no_grad;
  // What differs between replicas: batch-norm statistics, the epoch's partial sums, and the
  // random generators. Every replica contributes its row, so one file holds the whole job.
  std::vector<torch::Tensor> floats;
  for (auto& b : float_buffers(*replica.model.ptr(), replica.stat_sets)) {
    floats.push_back(b.flatten());
  }
  floats.push_back(replica.loss_sum.defined() ? replica.loss_sum.reshape({1})
                                              : torch::zeros({1}, replica.grads.options()));
  for (const auto& a : replica.average) floats.push_back(a.flatten());  // --lookahead's
  const auto dev = replica.device;
  const auto ints =
      replica.correct.defined()
          ? replica.correct.reshape({1})
          : torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  Communicator* comm = replica.comm.get();
  const auto float_rows = gather_rows(comm, torch::cat(floats)).cpu();
  const auto int_rows = gather_rows(comm, ints).cpu();
  const auto rng_rows = gather_rows(comm, generator_states(dev).to(dev)).cpu();
  if (replica.rank != 0) return;
  const auto path = checkpoint_path(checkpoints_.dir, epoch, step);
  if (!checkpoints_.writer) {  // rank 0's process writes it; the others can name it
    remember({epoch, step, path, /*elsewhere=*/true});
    return;
  }

  torch::serialize::OutputArchive archive;
  archive.write("fingerprint", c10::IValue(checkpoints_.fingerprint));
  archive.write("position", torch::tensor({epoch, step}, torch::kInt64));
  // The plan generators as they were before this epoch's plan (at an epoch's end: now).
  archive.write("shuffle_state", step == 0 ? generator_state(shuffle_) : epoch_shuffle_state_);
  archive.write("augment_state", step == 0 ? generator_state(augment_) : epoch_augment_state_);
  archive.write("rank_floats", float_rows);
  archive.write("rank_ints", int_rows);
  archive.write("rank_generators", rng_rows);
  archive.write("history", history_tensor(history_));
  archive.write("throughput", torch::tensor({train_seconds_, train_images_}, torch::kFloat64));
  archive.write("lr", torch::tensor(config_.lr, torch::kFloat64));
  // Wall time of the run and of the epoch in progress so far.
  const auto now = std::chrono::steady_clock::now();
  const double epoch_seconds =
      step == 0 ? 0.0
                : epoch_earlier_seconds_ +
                      std::chrono::duration<double>(now - epoch_started_).count();
  archive.write("elapsed", torch::tensor({run_seconds(), epoch_seconds}, torch::kFloat64));
  archive.write("threads", torch::tensor(static_cast<int64_t>(torch::get_num_threads())));
  archive.write("lr_changes", lr_changes_tensor(lr_changes_));
  torch::serialize::OutputArchive model, optimizer;
  replica.model.ptr()->save(model);
  if (replica.optimizer) {
    replica.optimizer->save(optimizer);
  } else {
    optimizer.write("momentum_logical", logical_momentum(replica));  // fused SGD's whole state
  }
  if (replica.loss_scale.defined()) {  // --amp fp16: GradScaler's state
    optimizer.write("loss_scale", replica.loss_scale);
    optimizer.write("growth_tracker", replica.growth_tracker);
  }
  archive.write("model", model);
  archive.write("optimizer", optimizer);
  std::error_code ec;
  std::filesystem::create_directories(checkpoints_.dir, ec);
  save_archive(archive, kCheckpointFormat, "checkpoint", path);
  prune_checkpoints(checkpoints_.dir, checkpoints_.keep);
  remember({epoch, step, path, /*elsewhere=*/false});
}

void Trainer::load_checkpoint(Replica& replica, const std::filesystem::path& file) {
  torch::NoGradGuard no_grad;
  auto archive = load_archive(file, kCheckpointFormat, "checkpoint", replica.device);
  torch::serialize::InputArchive model, optimizer;
  archive.read("model", model);
  archive.read("optimizer", optimizer);
  replica.model.ptr()->load(model);
  bind_parameters(replica);  // loading replaced the parameters' storage
  if (replica.optimizer) {
    replica.optimizer->load(optimizer);
  } else {
    // Checkpoints before "momentum_logical" held the buffer in the memory format of their run.
    torch::Tensor momentum;
    const bool logical = optimizer.try_read("momentum_logical", momentum);
    if (!logical) optimizer.read("momentum", momentum);
    if (!momentum.sizes().equals(replica.momentum.sizes())) {
      throw data::InputError(fmt::format("checkpoint {}: momentum buffer of {} values, expected {}",
                                         file.string(), momentum.numel(),
                                         replica.momentum.numel()));
    }
    if (logical) {
      set_logical_momentum(replica, momentum);
    } else {
      replica.momentum.copy_(momentum);
    }
  }
  if (replica.loss_scale.defined()) {  // the fingerprint has made sure it is an fp16 run's
    torch::Tensor scale, tracker;
    if (!optimizer.try_read("loss_scale", scale) ||
        !optimizer.try_read("growth_tracker", tracker)) {
      throw data::InputError(fmt::format("checkpoint {}: no float16 loss scale in it",
                                         file.string()));
    }
    replica.loss_scale.copy_(scale);
    replica.growth_tracker.copy_(tracker);
  }
  torch::Tensor float_rows, int_rows, rng_rows;
  archive.read("rank_floats", float_rows);
  archive.read("rank_ints", int_rows);
  archive.read("rank_generators", rng_rows);
  const int64_t row = replica.comm ? replica.comm->rank() : 0;
  auto floats = float_rows[row];
  int64_t offset = 0;
  for (auto& b : float_buffers(*replica.model.ptr(), replica.stat_sets)) {
    if (offset + b.numel() >= floats.numel()) {  // the last value is the loss sum
      throw data::InputError(fmt::format("checkpoint {}: fewer replica statistics than this run "
                                         "holds",
                                         file.string()));
    }
    b.copy_(floats.narrow(0, offset, b.numel()).view_as(b));
    offset += b.numel();
  }
  // The other buffers (num_batches_tracked) are the same in every set.
  const auto buffers = replica.model.ptr()->buffers();
  for (size_t k = 1; k < replica.stat_sets.size(); ++k) {
    for (size_t i = 0; i < buffers.size(); ++i) {
      if (!buffers[i].is_floating_point()) replica.stat_sets[k][i].copy_(buffers[i]);
    }
  }
  replica.loss_sum.copy_(floats[offset++]);
  if (config_.lookahead > 0) {  // the fingerprint has made sure the run had it too
    start_lookahead(replica);
    for (auto& a : replica.average) {
      if (offset + a.numel() > floats.numel()) {
        throw data::InputError(fmt::format(
            "checkpoint {}: no lookahead average in it for every replica statistics set (a "
            "checkpoint of an --accumulate run written before each micro-batch's statistics had "
            "an average of their own cannot continue)",
            file.string()));
      }
      a.copy_(floats.narrow(0, offset, a.numel()).view_as(a));
      offset += a.numel();
    }
  }
  replica.correct.copy_(int_rows[row][0]);
  set_generator_states(replica.device, rng_rows[row].cpu());
}

void Trainer::remember(Saved saved) {
  saved_.push_back(std::move(saved));  // and forget those pruned, as prune_checkpoints does
  const auto keep = static_cast<size_t>(std::max<int64_t>(0, checkpoints_.keep) + 1);
  if (saved_.size() > keep) saved_.erase(saved_.begin(), saved_.end() - keep);
}

std::filesystem::path Trainer::last_checkpoint() const {
  return saved_.empty() ? std::filesystem::path() : saved_.back().file;
}

std::string Trainer::describe(const Saved& saved) {
  if (!saved.elsewhere) return saved.file.string();
  return fmt::format("{} (written by the rank 0 process into its --out-dir's checkpoints/)",
                     saved.file.filename().string());
}

std::string Trainer::non_finite_advice(int64_t bad_step, int64_t steps) const {
  // The checkpoint just before the bad step holds the weights that gave it: resumed, it gives
  // it again whatever the rate. One at least a step older led to a finite step.
  const Saved* good = nullptr;
  for (const auto& s : saved_) {
    if (s.epoch * steps + s.step <= bad_step - 2) good = &s;
  }
  if (good) {
    return fmt::format(
        "The last good checkpoint is {}: continue from it with a lower learning rate "
        "(--resume it with --lr {:g}, say).",
        describe(*good), config_.lr / 10);
  }
  if (saved_.empty()) {
    return "No checkpoint was written before it: start again with a lower --lr.";
  }
  return fmt::format(
      "The newest checkpoint, {}, holds the weights that gave it, and no older one is kept "
      "(--keep): start again with a lower --lr.",
      describe(saved_.back()));
}

double Trainer::run_seconds() const {
  return earlier_seconds_ +
         std::chrono::duration<double>(std::chrono::steady_clock::now() - checkpoints_.started)
             .count();
}

Resumed Trainer::resume(const std::filesystem::path& file) {
  auto archive = load_archive(file, kCheckpointFormat, "checkpoint", torch::kCPU);
  c10::IValue fingerprint;
  archive.read("fingerprint", fingerprint);
  const std::string diff =
      fingerprint_difference(fingerprint.toStringRef(), checkpoints_.fingerprint);
  if (!diff.empty()) {
    throw data::InputError(fmt::format(
        "checkpoint {} is from another run and cannot continue this one: {}", file.string(), diff));
  }
  // The rate may be lowered (after a non-finite loss), not raised.
  torch::Tensor saved_lr, saved_changes;
  const double had = archive.try_read("lr", saved_lr)
                         ? saved_lr.item<double>()
                         : fingerprint_number(fingerprint.toStringRef(), "lr").value_or(config_.lr);
  if (config_.lr > had) {
    throw data::InputError(fmt::format(
        "checkpoint {}: --lr {} is higher than the checkpoint's {}; a resume may keep the "
        "learning rate or lower it, not raise it",
        file.string(), config_.lr, had));
  }
  torch::Tensor position, shuffle_state, augment_state, throughput;
  archive.read("position", position);
  archive.read("shuffle_state", shuffle_state);
  archive.read("augment_state", augment_state);
  archive.read("throughput", throughput);
  torch::Tensor history;
  archive.read("history", history);
  history_ = history_from_tensor(history);
  for_each_replica([&](Replica& r) { load_checkpoint(r, file); });
  start_epoch_ = position[0].item<int64_t>();
  start_step_ = position[1].item<int64_t>();
  set_generator_state(shuffle_, shuffle_state);
  set_generator_state(augment_, augment_state);
  train_seconds_ = throughput[0].item<double>();
  train_images_ = throughput[1].item<double>();
  saved_ = {{start_epoch_, start_step_, file, /*elsewhere=*/false}};
  resumed_ = true;
  // The per-step log's first point after the resume covers the steps since the checkpoint.
  logged_epoch_ = start_epoch_;
  logged_images_ = 0;
  for (const Shard& shard : local_shards(*replicas_[0])) {
    logged_images_ += static_cast<double>(start_step_ * shard.size);
  }
  logged_loss_sum_ = start_step_ > 0 ? replicas_[0]->loss_sum.item<double>() : 0;
  carried_loss_sum_ = carried_images_ = 0;
  lr_changes_ = archive.try_read("lr_changes", saved_changes)
                    ? lr_changes_from_tensor(saved_changes)
                    : std::vector<LrChange>{};
  torch::Tensor elapsed, threads;  // both absent from checkpoints before them
  if (archive.try_read("elapsed", elapsed)) {
    earlier_seconds_ = elapsed[0].item<double>();
    epoch_earlier_seconds_ = elapsed[1].item<double>();
  }
  Resumed resumed;
  resumed.epoch = start_epoch_;
  resumed.step = start_step_;
  if (archive.try_read("threads", threads)) resumed.threads = threads.item<int64_t>();
  if (config_.lr < had) {
    lr_changes_.push_back({start_epoch_, start_step_, had, config_.lr});
    resumed.lr_lowered = lr_changes_.back();
  }
  return resumed;
}

void Trainer::agree_on_start(const std::string& refusal) {
  agreed_ = true;
  if (world_size() == replicas()) {  // one process: nothing to agree on
    if (!refusal.empty()) throw data::InputError(refusal);
    return;
  }
  const std::string start =
      resumed_ ? "resumes from checkpoint " + saved_.front().file.filename().string()
               : "starts afresh";
  const auto mine = start_record(
      start_settings(checkpoints_.fingerprint, config_, world_size(), replicas_[0]->reducer.get()),
      start, refusal);
  std::vector<std::string> records;  // every rank's, in rank order
  for_each_replica([&](Replica& r) {
    auto all = gather_texts(r.comm.get(), mine.dump(), r.device);
    if (&r == replicas_[0].get()) records = std::move(all);
  });
  std::vector<nlohmann::json> ranks;
  for (const auto& text : records) ranks.push_back(nlohmann::json::parse(text));
  check_start_records(ranks);
}

double Trainer::rate_at_epoch_start(int64_t epoch) const {
  LrSchedule then = schedule_;
  for (auto c = lr_changes_.rbegin(); c != lr_changes_.rend(); ++c) {
    if (c->epoch > epoch || (c->epoch == epoch && c->step > 0)) then.base_lr = c->from;
  }
  return then.at(epoch, 0.0);
}

}  // namespace mgpu::train
