#!/usr/bin/env bash
# Issue 25's GPU checks in one call (device tool, `carry: [".deps"]`, after scripts/gpu-prepare.sh
# here), in this order, each under a budget of its own (seconds), each result written as soon as
# it exists ($OUT/results.tar.gz is repacked after every part):
#   1. build                                                                   120
#   2. the GPU tests (NCCL, graphs)                                             90
#   3. one-rank NCCL with overlap against --no-overlap, --deterministic: the same history and
#      weights, bit for bit; and with --cuda-graphs (the captured step forks and joins the NCCL
#      stream)                                                                  90
#   4. mgpu bench --gpus 1 --comm nccl: the overlapped step beside --no-overlap's (the cost of
#      the buckets, target <= 2%), with a profiler trace of the overlapped steps         60
#   5. the trace: do NCCL's kernels run while the step's other kernels run? (two GPUs or more:
#      one rank's in-place all-reduce runs no kernel)                          20
# Usage: scripts/gpu-overlap.sh   (about 6 minutes at most)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-common.sh
gpu_start gpu-overlap
plan "build 120" "GPU tests 90" "overlap against --no-overlap 90" "bench with a trace 60" \
  "the trace 20"

part "build" 120 scripts/gpu-build.sh "$OUT" || { pack; exit 1; }

part "GPU tests" 90 bash -c "cd build-gpu && ctest -j 4 --timeout 80 \
  -R 'Gpu|Nccl|Cuda|StepGraph|Reducer' --output-on-failure > '$OUT/ctest.log' 2>&1"
grep -E "tests passed|Failed|\*\*\*|SKIP" "$OUT/ctest.log" | head -20

wait "$convert_pid"
B=build-gpu/mgpu
DATA=(--gpus 1 --comm nccl --dataset cifar10 --data-dir .deps/data --verbose 2 --deterministic
      --limit-train 12800 --limit-test 2000 --epochs 2)
same_run() {  # $1, $2: run names; the history's losses and accuracies and the weights agree
  cmp -s <(cut -d, -f1,2,4- "$OUT/$1/history.csv") <(cut -d, -f1,2,4- "$OUT/$2/history.csv") &&
    python3 scripts/compare_weights.py "$OUT/$1/model.pt" "$OUT/$2/model.pt"
}
overlap_against_serial() {
  $B train "${DATA[@]}" --bucket-mb 1 --out-dir "$OUT/overlap" > "$OUT/overlap.log" 2>&1 &&
  $B train "${DATA[@]}" --no-overlap --out-dir "$OUT/serial" > "$OUT/serial.log" 2>&1 &&
  same_run overlap serial &&
  $B train "${DATA[@]}" --bucket-mb 1 --cuda-graphs --out-dir "$OUT/graphs" > "$OUT/graphs.log" 2>&1 &&
  $B train "${DATA[@]}" --no-overlap --cuda-graphs --out-dir "$OUT/graphs-serial" \
    > "$OUT/graphs-serial.log" 2>&1 &&
  same_run graphs graphs-serial
}
part "one-rank NCCL, overlap against --no-overlap" 90 overlap_against_serial
tail -n 2 "$OUT/overlap.log" "$OUT/serial.log" "$OUT/graphs.log" "$OUT/graphs-serial.log"

part "bench --comm nccl with a trace" 60 bash -c "$B bench --gpus 1 --comm nccl --bucket-mb 1 \
  --steps 200 --warmup 30 --trace --out-dir '$OUT/bench' > '$OUT/bench.log' 2>&1; rc=\$?; \
  tail -n 8 '$OUT/bench.log'; exit \$rc"

# One rank's in-place all-reduce is a no-op in NCCL (ncclLaunchOneRank: no kernel), so the trace
# can show NCCL's kernels beside the backward pass's only with two GPUs or more.
if (( $(nvidia-smi -L | wc -l) > 1 )); then
  part "the trace" 20 python3 scripts/check_trace_overlap.py "$OUT/bench/trace.json"
else
  step "the trace: not checked on one GPU (a one-rank NCCL all-reduce in place runs no kernel)"
fi
step "done"
