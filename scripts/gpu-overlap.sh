#!/usr/bin/env bash
# Issue 25's checks on every GPU of the machine (device tool, `carry: [".deps"]`, after
# scripts/gpu-prepare.sh here). Worth a call only with two GPUs or more: on one, the first call
# (scripts/gpu-check.sh) already compares the one-rank NCCL step with and without overlap, and
# NCCL runs no kernel for one rank's in-place all-reduce (ncclLaunchOneRank), so a trace shows
# nothing to check. Each part under a budget of its own (seconds), results repacked after each:
#   1. build: mgpu alone, from a fresh machine (BUILD_MGPU_S, gpu-common.sh)            150
#   2. NCCL with overlap against --no-overlap, --deterministic: the same history and weights,
#      bit for bit; and the same with --cuda-graphs (the captured step forks and joins the
#      NCCL stream)                                                                      50
#   3. mgpu bench --comm nccl: the overlapped step beside --no-overlap's (the cost of the
#      buckets, target <= 2%), 200 timed steps                                           25
#   4. a profiler trace of 20 overlapped steps, in a bench of its own (the trace covers every
#      timed step, about 1 MB of JSON a step: 200 steps, ~20 MB compressed, would not come
#      back, and the archive with it)                                                    25
#   5. the trace: do NCCL's kernels run while the step's other kernels run?              20
#   total 270 s of budgets; x 1.25 = 337 s, within a call of 6 minutes
# Usage: scripts/gpu-overlap.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
source scripts/gpu-common.sh
gpu_start gpu-overlap
plan 360 "build=$BUILD_MGPU_S" "overlap against --no-overlap=50" "bench --comm nccl=25" \
  "bench with a trace=25" "the trace=20"

part "build" scripts/gpu-build.sh "$OUT" mgpu || { pack; exit 1; }

wait "$convert_pid"
B=build-gpu/mgpu
gpus=$(nvidia-smi -L | wc -l)
DATA=(--gpus "$gpus" --comm nccl --dataset cifar10 --data-dir .deps/data --verbose 2 --deterministic
      --limit-train 6400 --limit-test 1000 --epochs 2)
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
part "overlap against --no-overlap" overlap_against_serial
tail -n 2 "$OUT/overlap.log" "$OUT/serial.log" "$OUT/graphs.log" "$OUT/graphs-serial.log"

bench_nccl() {  # STEPS NAME [--trace]
  $B bench --gpus "$gpus" --comm nccl --bucket-mb 1 --steps "$1" --warmup 30 "${@:3}" \
    --out-dir "$OUT/$2" > "$OUT/$2.log" 2>&1
  local rc=$?
  tail -n 8 "$OUT/$2.log"
  return $rc
}
part "bench --comm nccl" bench_nccl 200 bench
part "bench with a trace" bench_nccl 20 bench-trace --trace

if ((gpus > 1)); then
  part "the trace" python3 scripts/check_trace_overlap.py "$OUT/bench-trace/trace.json"
else
  step "the trace: not checked on one GPU (a one-rank NCCL all-reduce in place runs no kernel)"
fi
step "done"
