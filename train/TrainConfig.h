// TrainConfig: everything one training run needs, as plain values with the tutorial's defaults.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/Datasets.h"

namespace mgpu::train {

/// Parameters whose names contain `pattern` (the first group that matches a name takes it),
/// trained with their own rate multiplier and weight decay, or for the first epochs only.
struct ParamGroup {
  std::string pattern;
  double lr_scale = 1;        // the group's rate: the schedule's x lr_scale
  double weight_decay = -1;   // < 0: the run's --weight-decay
  int64_t epochs = -1;        // >= 0: trained only in epochs 0..epochs-1, then at rate 0 (under
                              // --lookahead they still move with the average, as in airbench)
  bool frozen = false;        // never trained (requires_grad off), as if epochs were 0
};

struct TrainConfig {
  data::DataConfig data;
  std::string model = "minigooglenet";  // a name in the model registry (models/Models.def)
  int64_t gpus = 0;               // 0: CPU; 1: the first CUDA device
  int64_t threads = 0;            // LibTorch intra-op threads; 0: all cores
  double epochs = 70;              // fractional: the run stops after ceil(steps per epoch x
                                  // epochs) steps, part way through its last epoch
  double lr = 5e-3;               // initial learning rate
  double power = 1.0;             // lr_e = lr * (1 - e / epochs)^power
  double momentum = 0.9;
  std::string lr_scaling = "none";  // "linear": lr x (global batch / batch_per_device)
  double warmup_epochs = 0;         // with linear scaling: ramp up to the scaled lr
  // Beyond the tutorial (its recipe is the default: docs/extending.md):
  std::string schedule = "poly";    // poly (power above), cosine, step (milestones, gamma),
                                    // constant, piecewise (lr_knots)
  std::vector<int64_t> milestones;  // step: the rate is multiplied by gamma after each (epochs)
  double gamma = 0.1;
  std::vector<std::pair<double, double>> lr_knots;  // piecewise: (fraction of the run, multiple
                                                    // of lr), interpolated at every step
  double weight_decay = 0;          // L2 added to the gradient, as torch.optim.SGD does
  bool decay_norm_bias = true;      // false: no decay of 1-d parameters (norms, biases), as timm
  bool nesterov = false;
  double label_smoothing = 0;       // cross-entropy against (1 - s) one-hot + s / classes
  double clip_grad_norm = 0;        // > 0: scale the gradient down to at most this 2-norm
  std::string tta = "none";         // validation's test-time augmentation: none, mirror,
                                    // mirror-translate (train/Tta.h)
  std::string loss_reduction = "mean";  // "sum": the loss (and so the gradient) is summed over
                                        // the global batch, not averaged
  std::vector<ParamGroup> param_groups;  // the rest: lr x 1, weight_decay, every epoch
  int64_t lookahead = 0;          // > 0: every that many steps, the weights (and batch-norm
                                  // statistics) move to an exponential moving average of them,
                                  // airbench's lookahead; the run ends on the average
  double lookahead_decay = 0.95;  // per step: the average keeps decay^lookahead x (t / T)^3
  int64_t translate = 0;          // > 0: random shifts of up to this many pixels with reflected
                                  // borders (airbench's crop) instead of the tutorial's 10%
  std::string flip = "random";    // random (each image, each epoch), alternating (each image
                                  // flipped at random once, then the whole set mirrored on odd
                                  // epochs, as airbench), or none
  int64_t cpu_replicas = 1;       // with gpus == 0: data-parallel replicas on the CPU
  int64_t batch_per_device = 64;  // images per replica per micro-batch
  int64_t accumulate = 1;         // micro-batches per optimizer step on each replica
  double comm_timeout_s = 300;    // a collective that waits longer for a peer fails
  std::string comm = "auto";      // "local", "nccl"; auto: nccl for several GPUs, else local
  double bucket_mb = 25;          // gradient all-reduce buckets (DDP's bucket_cap_mb; the first 1)
  bool overlap = true;            // start each bucket's all-reduce during the backward pass
  std::string comm_dtype = "float32";  // the all-reduce's type: float32, bf16 or fp16 (DDP's
                                       // bf16_compress_hook and fp16_compress_hook)
  int64_t eval_batch = 256;       // evaluation batch (no effect on results)
  uint64_t seed = 42;
  // The tutorial's random shifts and flips, and the per-epoch shuffle (off: only for tests that
  // compare the steps with another framework's on the same batches).
  bool augment = true;
  bool shuffle = true;
  bool deterministic = false;     // deterministic cuDNN and LibTorch kernels (GPU runs repeat bit for bit)
  // Speed (docs/benchmarks.md measures each on its own):
  std::string amp = "off";        // "bf16" or "fp16": forward passes autocast to bfloat16 or
                                  // float16 (weights and batch-norm statistics stay float32);
                                  // fp16 scales the loss as torch.amp.GradScaler does and
                                  // implies fused_sgd (a skipped step is decided on the device)
  double loss_scale = 65536;      // fp16: the initial loss scale (GradScaler's init_scale)
  int64_t loss_scale_growth_interval = 2000;  // fp16: clean steps before the scale doubles
  bool channels_last = false;     // 4-d weights and inputs in NHWC memory order (the CLI's
                                  // default on the CPU)
  bool fused_sgd = false;         // SGD over one flat parameter buffer: 3 kernels a step
  bool cuda_graphs = false;       // GPU: replay the whole training step from a CUDA graph
                                  // (implies fused_sgd: the learning rate lives on the device)
  bool cudnn_benchmark = true;    // cuDNN autotuning (off with deterministic)
  bool tf32 = true;               // TF32 tensor cores for float32 convolutions and matmuls
  int verbose = 1;                // 0 silent, 1 progress bar, 2 one line per epoch
  std::string out_dir;            // empty: runs/<dataset>-<timestamp>
  int64_t checkpoint_every = 0;   // also checkpoint every N steps (0: at epoch ends only)
  int64_t keep = 1;               // older checkpoints kept besides the newest
  std::string resume;             // "", "auto" (the newest in <out_dir>/checkpoints), or a file
  std::string plot_path;          // --output; empty: <out_dir>/plot.png
  bool tensorboard = true;        // event files in <out_dir>/tensorboard (rank 0 writes)
  int64_t tensorboard_every = 50;  // also log the loss and rate every N steps (0: epochs only)
};

}  // namespace mgpu::train
