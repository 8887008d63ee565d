#!/usr/bin/env bash
# The second GPU call of a session (device tool, `carry: [".deps"]`, after scripts/gpu-prepare.sh
# here; the plan is docs/benchmarks.md, "The GPU calls"): the one-rank NCCL comparison inside
# CUDA graphs and the bench, each part under a budget of its own (seconds), results repacked
# after every part:
#   1. build: mgpu alone, from a fresh machine (BUILD_MGPU_S, gpu-common.sh)               150
#   2. one-rank NCCL against the plain path with --cuda-graphs (the captured step forks and
#      joins the NCCL stream), --deterministic, bit for bit, overlap and --no-overlap       18
#   3. bench: the levels, the graph level at --warmup 3 (the capture is never timed), and the
#      one-rank NCCL step overlapped against --no-overlap                                   40
#   total 208 s of budgets; x 1.25 = 260 s, within a call of 6 minutes
# Usage: scripts/gpu-bench.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
failed=()
source scripts/gpu-common.sh
gpu_start gpu-bench  # the CIFAR-10 stand-in converts while the build runs
plan 360 "build=$BUILD_MGPU_S" "one-rank NCCL against plain, CUDA graphs=18" "bench=40"

part "build" scripts/gpu-build.sh "$OUT" mgpu || { pack; exit 1; }
wait "$convert_pid"
tail -2 "$OUT/cifar.log"
B=build-gpu/mgpu
part "one-rank NCCL against plain, CUDA graphs" nccl_against_plain graphs --cuda-graphs ||
  failed+=(nccl-graphs)

bench() {  # the levels; the graph level at --warmup 3; the one-rank NCCL step, overlap or not
  local rc=0
  $B bench --gpus 1 --levels all --steps 100 --warmup 30 --out-dir "$OUT/bench" \
    > "$OUT/bench.log" 2>&1 || rc=1
  $B bench --gpus 1 --levels cuda-graphs --steps 100 --warmup 3 --out-dir "$OUT/bench-w3" \
    > "$OUT/bench-w3.log" 2>&1 || rc=1
  $B bench --gpus 1 --comm nccl --bucket-mb 1 --steps 100 --warmup 30 --out-dir "$OUT/bench-nccl" \
    > "$OUT/bench-nccl.log" 2>&1 || rc=1
  grep -h -A6 "^level" "$OUT"/bench*.log
  grep -h "^overlap" "$OUT/bench-nccl.log"
  return $rc
}
part "bench" bench || failed+=(bench)

((${#failed[@]} == 0)) || step "FAILED: ${failed[*]}"
step "done"
((${#failed[@]} == 0))
