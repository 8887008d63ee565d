#!/usr/bin/env bash
# The first GPU call of a session (device tool, `carry: [".deps"]`, after scripts/gpu-prepare.sh
# here; the plan is docs/benchmarks.md, "The GPU calls"): the training paths on the GPU, bit for
# bit, and the bench's levels, each part under a budget of its own (seconds), each result
# written as soon as it exists ($OUT/results.tar.gz is repacked after every part, so a call cut
# off still brings back what was done):
#   1. build: mgpu alone, from a fresh machine (BUILD_MGPU_S, gpu-common.sh; mgpu and the
#      tests take ~255 s, more than this call can hold: the GPU tests are the next call,
#      scripts/gpu-tests.sh, which on a machine still warm adds the tests to this build)   150
#   2. one-rank NCCL against the plain path, --deterministic, bit for bit: with overlap
#      (--bucket-mb 1) and with --no-overlap, three runs at once; beside them ResNet-20 and
#      airbench94 under strict --deterministic (a kernel without a deterministic version
#      stops the run and is named)                                                        22
#   3. the same three with --cuda-graphs                                                  18
#   4. bench: the levels, the graph level at --warmup 3 (the capture is never timed), and the
#      one-rank NCCL step overlapped against --no-overlap                                 40
#   total 230 s of budgets; x 1.25 = 287 s, within the first call's 300 s (5 minutes)
# Usage: scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
failed=()
source scripts/gpu-common.sh
gpu_start gpu-check  # the CIFAR-10 stand-in converts while the build runs
plan 300 "build=$BUILD_MGPU_S" "one-rank NCCL against plain=22" \
  "one-rank NCCL against plain, CUDA graphs=18" "bench=40"

part "build" scripts/gpu-build.sh "$OUT" mgpu || { pack; exit 1; }
wait "$convert_pid"
tail -2 "$OUT/cifar.log"
B=build-gpu/mgpu
# 200 steps of batch 64 and two evaluations: enough for any difference to show in the weights.
# Three to five runs at once on the 16 cores: 3 LibTorch threads each.
DATA=(--gpus 1 --dataset cifar10 --data-dir .deps/data --verbose 2 --threads 3)
SHORT=(--limit-train 6400 --limit-test 1000 --epochs 2 --deterministic)
run() {  # NAME FLAGS...: one short deterministic run
  local name=$1
  shift
  $B train "${DATA[@]}" "${SHORT[@]}" "$@" --out-dir "$OUT/$name" > "$OUT/$name.log" 2>&1
}
same_run() {  # RUN RUN: the history's losses and accuracies and the weights agree, bit for bit
  cmp -s <(cut -d, -f1,2,4- "$OUT/$1/history.csv") <(cut -d, -f1,2,4- "$OUT/$2/history.csv") &&
    python3 scripts/compare_weights.py "$OUT/$1/model.pt" "$OUT/$2/model.pt"
}
nccl_against_plain() {  # TAG FLAGS...: the plain path, and NCCL with and without overlap, at once
  local tag=$1 pids=() pid rc=0
  shift
  run "plain-$tag" "$@" & pids+=($!)
  run "nccl-$tag" --comm nccl --bucket-mb 1 "$@" & pids+=($!)
  run "nccl-serial-$tag" --comm nccl --no-overlap "$@" & pids+=($!)
  if [[ $tag == eager ]]; then  # the other shipped models: strict --deterministic, no comparison
    run "resnet20-$tag" --model resnet20 & pids+=($!)
    run "airbench94-$tag" --model airbench94 & pids+=($!)
  fi
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  tail -n 2 "$OUT"/*-"$tag".log
  grep -h "deterministic implementation" "$OUT"/*-"$tag".log
  ((rc == 0)) && same_run "plain-$tag" "nccl-$tag" && same_run "plain-$tag" "nccl-serial-$tag"
}
part "one-rank NCCL against plain" nccl_against_plain eager || failed+=(nccl)
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
