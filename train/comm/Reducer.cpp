// The bucketed, overlapped gradient all-reduce: buckets as slices of the flat gradient buffer,
// started in order from the autograd engine's AccumulateGrad post hooks.
#include "train/comm/Reducer.h"

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

#include <algorithm>

namespace mgpu::train {

std::vector<Bucket> assign_buckets(const std::vector<int64_t>& numels, int64_t element_bytes,
                                   int64_t tail, const BucketOptions& options) {
  constexpr double kMiB = 1024.0 * 1024.0;
  const double first_cap = std::min(options.first_bucket_mb, options.bucket_mb) * kMiB;
  const double cap = options.bucket_mb * kMiB;
  std::vector<int64_t> offsets(numels.size() + 1, 0);
  for (size_t i = 0; i < numels.size(); ++i) offsets[i + 1] = offsets[i] + numels[i];
  std::vector<Bucket> buckets;
  Bucket open;
  int64_t end = offsets.back() + tail;  // the open bucket's end in the buffer
  for (size_t k = numels.size(); k-- > 0;) {
    open.params.push_back(k);
    open.offset = offsets[k];
    const double bytes = static_cast<double>((end - open.offset) * element_bytes);
    if (bytes >= (buckets.empty() ? first_cap : cap)) {
      open.size = end - open.offset;
      end = open.offset;
      buckets.push_back(std::move(open));
      open = Bucket{};
    }
  }
  if (!open.params.empty() || buckets.empty()) {
    open.offset = 0;
    open.size = end;
    buckets.push_back(std::move(open));
  }
  return buckets;
}

Reducer::Reducer(std::vector<torch::Tensor> params, torch::Tensor flat, int64_t tail,
                 Communicator& comm, const BucketOptions& options)
    : params_(std::move(params)),
      flat_(std::move(flat)),
      tail_(tail),
      comm_(comm),
      overlap_(options.overlap) {
  if (options.wire != flat_.scalar_type()) {
    wire_ = torch::empty({flat_.numel()}, flat_.options().dtype(options.wire));
  }
  std::vector<int64_t> numels;
  for (const auto& p : params_) numels.push_back(p.numel());
  if (overlap_) {
    buckets_ = assign_buckets(numels, flat_.element_size(), tail, options);
  } else {  // today's single all-reduce
    Bucket all{0, flat_.numel(), {}};
    for (size_t i = params_.size(); i-- > 0;) all.params.push_back(i);
    buckets_.push_back(std::move(all));
  }
  TORCH_CHECK(buckets_.front().offset + buckets_.front().size == flat_.numel() &&
                  buckets_.back().offset == 0,
              "Reducer: the gradients and tail do not fill the flat buffer");
  bucket_of_.resize(params_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (size_t i : buckets_[b].params) bucket_of_[i] = b;
  }
  accumulators_.resize(params_.size());
  hook_keys_.resize(params_.size());
}

Reducer::~Reducer() { unhook(); }

void Reducer::unhook() {
  for (size_t i = 0; i < accumulators_.size(); ++i) {
    if (accumulators_[i]) accumulators_[i]->del_post_hook(hook_keys_[i]);
    accumulators_[i].reset();
  }
}

void Reducer::hook(size_t i) {
  // The node this pass's forward made (on the stream it ran on, which is where the engine
  // then accumulates and runs the hook: a node kept from elsewhere would pin another stream,
  // and break a CUDA graph's capture). None: the parameter takes no part in this pass (unused
  // or frozen), so no gradient will be written to its slice and its bucket need not wait.
  accumulators_[i] = torch::autograd::impl::try_get_grad_accumulator(params_[i]);
  if (!accumulators_[i]) return;
  hook_keys_[i] =
      accumulators_[i]->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [this, i](const torch::autograd::variable_list& outputs,
                    const torch::autograd::variable_list& /*inputs*/) {
            ready(i);
            return outputs;
          }));
}

void Reducer::arm() {
  open_pass();
  if (!overlap_) return;
  unhook();
  for (size_t i = 0; i < params_.size(); ++i) hook(i);
  waiting_.assign(buckets_.size(), 0);
  for (size_t i = 0; i < params_.size(); ++i) {
    if (accumulators_[i]) ++waiting_[bucket_of_[i]];
  }
  seen_.assign(params_.size(), false);
  armed_ = true;
  start_ready_buckets();  // a bucket of frozen parameters only has nothing to wait for
}

void Reducer::ready(size_t i) {
  if (!armed_ || error_) return;
  if (seen_[i]) {  // its slice may already be on the wire: a second gradient would be lost
    error_ = std::make_exception_ptr(std::runtime_error(
        "the gradient of parameter " + std::to_string(i) +
        " was accumulated twice in one "
        "backward pass, after its bucket's all-reduce had started; train with --no-overlap"));
    return;
  }
  seen_[i] = true;
  if (--waiting_[bucket_of_[i]] == 0) start_ready_buckets();
}

// In bucket order only, on every rank: the ranks' collectives then match one for one whatever
// order the engine finishes the gradients in.
void Reducer::start_ready_buckets() {
  while (next_ < buckets_.size() && waiting_[next_] == 0 && !error_) start(next_++);
}

void Reducer::start(size_t b) {
  try {
    const auto& bucket = buckets_[b];
    auto slice = flat_.narrow(0, bucket.offset, bucket.size);
    if (!wire_.defined()) {
      works_.push_back(comm_.all_reduce_sum_async(slice));
    } else {
      // A 16-bit wire, as DDP's bf16 and fp16 compression hooks: the gradients (already
      // weighted by this replica's share of the global batch, so the sum is the mean: the
      // division comes first, as the hooks do it) cast, summed in 16 bits in rank order, and
      // cast back by finish(). The tail (the control words, at the end of bucket 0) stays
      // float32: a flag must arrive exact.
      const int64_t tail = b == 0 ? tail_ : 0;
      auto grads = slice.narrow(0, 0, bucket.size - tail);
      auto wire = wire_.narrow(0, bucket.offset, bucket.size - tail);
      wire.copy_(grads);
      works_.push_back(comm_.all_reduce_sum_async(wire));
      unpack_.emplace_back(grads, wire);
      if (tail > 0) {
        works_.push_back(comm_.all_reduce_sum_async(slice.narrow(0, bucket.size - tail, tail)));
      }
    }
    if (timeline_.started.size() > b) timeline_.started[b] = since_arm();
  } catch (...) {
    error_ = std::current_exception();  // thrown by finish(), on the trainer's thread
  }
}

void Reducer::open_pass() {
  armed_at_ = Clock::now();
  timeline_ = StepTimeline{};
  timeline_.started.assign(buckets_.size(), -1);
  next_ = 0;
  works_.clear();
  unpack_.clear();
  error_ = nullptr;
  pass_open_ = true;
}

void Reducer::finish() {
  if (!pass_open_) open_pass();  // a backward pass without arm(): everything starts now
  pass_open_ = false;
  armed_ = false;
  unhook();  // the pass's nodes go with its graph
  timeline_.backward_end = since_arm();
  while (next_ < buckets_.size() && !error_) start(next_++);
  if (error_) std::rethrow_exception(error_);
  for (auto& work : works_) work->wait();
  works_.clear();
  for (auto& [grads, wire] : unpack_) grads.copy_(wire);
  unpack_.clear();
  timeline_.finished = since_arm();
  timeline_.bytes.clear();
  for (size_t b = 0; b < buckets_.size(); ++b) timeline_.bytes.push_back(wire_bytes(b));
}

int64_t Reducer::wire_bytes(size_t b) const {
  const int64_t size = buckets_[b].size;
  if (!wire_.defined()) return size * flat_.element_size();
  const int64_t tail = b == 0 ? tail_ : 0;
  return (size - tail) * wire_.element_size() + tail * flat_.element_size();
}

double Reducer::since_arm() const {
  return std::chrono::duration<double, std::milli>(Clock::now() - armed_at_).count();
}

}  // namespace mgpu::train
