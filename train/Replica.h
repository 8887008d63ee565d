// Trainer's internals shared by its source files (Trainer.cpp: the loop; Step.cpp: the step;
// Parameters.cpp; Evaluation.cpp; Checkpointing.cpp): one replica's state and an epoch's plan.
// Not for use outside train/.
#pragma once

#include <torch/torch.h>

#include <deque>
#include <memory>

#include "data/Dataset.h"
#include "train/StepGraph.h"  // defines: StepGraph
#include "train/Trainer.h"
#include "train/comm/Communicator.h"
#include "train/comm/Reducer.h"  // defines: Reducer

namespace mgpu::train {

struct Trainer::Replica {
  int rank = 0;
  torch::nn::AnyModule model;
  torch::Device device = torch::kCPU;
  torch::Tensor mean;      // [C, H, W] float on device
  torch::Tensor grads;     // flat gradient buffer; every parameter's .grad is a view into it
  torch::Tensor control;   // its last 2 entries, summed with it: stop requests, faults
  torch::Tensor params;    // fused SGD: flat buffer; every parameter is a view into it
  torch::Tensor momentum;  // fused SGD: the momentum buffer, flat like params
  torch::Tensor decay;     // fused SGD with a weight decay that differs by parameter: per entry
  torch::Tensor lr_scale;  // fused SGD with --param-group rates or frozen parameters: per entry
  // Each parameter's place in config.param_groups (-1: none), in parameters() order.
  std::vector<int> group_of;
  // Without fused SGD: each optimizer group's place in config.param_groups (-1: none).
  std::vector<int> optimizer_groups;
  double lr_scale_epoch = -1;  // the epoch lr_scale was last written for
  // --lookahead: the moving average of the parameters and float buffers (with --accumulate,
  // of every micro-batch's statistics too: start_lookahead), and those tensors themselves.
  std::vector<torch::Tensor> average, averaged;
  // 0-dim device tensors the step reads, set before it: rate, step number, stop request.
  torch::Tensor lr, step_number, stop_flag;
  torch::Tensor first_row;  // int64: the run's index of this step's first image (dropout keys)
  torch::Tensor first_bad;  // int64 on device: first step whose loss or gradient was not finite
  // --amp fp16, on device as torch.amp.GradScaler keeps them: the loss scale (float), the clean
  // steps since it last changed (int32), and whether this step's gradients overflowed (float
  // 0 or 1: the step is skipped).
  torch::Tensor loss_scale, growth_tracker, found_inf;
  std::unique_ptr<torch::optim::SGD> optimizer;  // without fused SGD
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<Reducer> reducer;  // with comm: the gradients' bucketed all-reduce (goes first)
  // With comm on a device that runs ahead of the host: the ends of the steps queued and not yet
  // seen finished, oldest first (at most kStepsInFlight).
  std::deque<std::shared_ptr<QueueMark>> in_flight;
  double backward_ms = 0;            // the last step's backward passes, host clock
  data::Dataset train, test;        // uint8 images and labels on device
  torch::Tensor loss_sum, correct;  // epoch totals over all replicas, on device
  // --accumulate K > 1: the running statistics (every buffer) of micro-batches 1..K-1, while
  // the module holds micro-batch 0's; stat_sets[0] keeps those while the others run.
  std::vector<std::vector<torch::Tensor>> stat_sets;
  Metrics val;                      // last evaluation
  // --cuda-graphs: the captured step, its static input (one global batch's plan rows), and
  // the steps run eagerly so far.
  std::unique_ptr<StepGraph> graph;
  torch::Tensor graph_batch;
  int64_t eager_steps = 0;
};

/// Each parameter's place in config.param_groups (the first whose pattern its name contains;
/// -1: none), in parameters() order.
std::vector<int> assign_groups(const TrainConfig& config, const torch::nn::Module& module);

/// A parameter group's rate multiplier in epoch (0-based): 0 once its epochs are over.
double group_lr_scale(const ParamGroup& group, int64_t epoch);

/// Columns of an epoch plan: one row per image of the epoch's batches.
enum PlanColumn : int64_t { kIndex = 0, kShiftX, kShiftY, kFlip, kPlanColumns };

struct Trainer::EpochPlan {
  int64_t epoch = 0;  // 0-based
  int64_t steps = 0;       // the steps this epoch runs (fewer in a fractional run's last)
  int64_t full_steps = 0;  // the steps of a whole epoch: global step = epoch x full_steps + step
  int64_t total_steps = 0;  // the steps of the whole run
  // [steps * global batch, kPlanColumns] int64 on the CPU: per image of the epoch's batches,
  // its index in the training set, its shifts and its flip.
  torch::Tensor rows;
};

}  // namespace mgpu::train
