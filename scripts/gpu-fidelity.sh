#!/usr/bin/env bash
# Issues 13's and 15's GPU runs (device tool, `carry: [".deps"]`, after scripts/gpu-prepare.sh
# here): the tutorial's 70 epochs with evaluation, one run after the other, each cut off at the
# deadline (history.csv keeps every finished epoch):
#   s1 s2 s3  seeds 1, 2, 3 at the fastest level that keeps float32 results to rounding and
#             bf16 forward passes (--amp bf16 --channels-last --cuda-graphs): the seed spread
#   notf32    seed 1 in full float32 (--no-tf32 --channels-last --cuda-graphs): the TF32 effect
#   acc4      the tutorial's 4-GPU case on one card: --accumulate 4 (global batch 256)
#   acc4lin   the same with --lr-scaling linear --warmup-epochs 5
#   fp16      seed 1 with --amp fp16 (GradScaler's loss scaling) instead of bf16
#   resnet20  ResNet-20 with its paper's recipe, 164 epochs (docs/extending.md), not the tutorial's
# Usage: scripts/gpu-fidelity.sh DEADLINE_S [RUN...] (default: all, in this order; a later
# session passes the runs still missing). $OUT gets results.tar.gz and the summary lines.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
DEADLINE="${1:-560}"
shift || true
RUNS=("$@")
[[ ${#RUNS[@]} -gt 0 ]] || RUNS=(s1 s2 s3 notf32 acc4 acc4lin fp16 resnet20)
source scripts/gpu-common.sh
gpu_start gpu-fidelity
step "build"
scripts/gpu-build.sh "$OUT" || exit 1
wait "$convert_pid"

B=build-gpu/mgpu
DATA=(--gpus 1 --dataset cifar10 --data-dir .deps/data --verbose 2 --epochs 70)
FAST=(--amp bf16 --channels-last --cuda-graphs)
for run in "${RUNS[@]}"; do
  case "$run" in
    s1 | s2 | s3) flags=("${FAST[@]}" --seed "${run#s}") ;;
    notf32) flags=(--no-tf32 --channels-last --cuda-graphs --seed 1) ;;
    acc4) flags=("${FAST[@]}" --accumulate 4 --seed 1) ;;
    acc4lin) flags=("${FAST[@]}" --accumulate 4 --lr-scaling linear --warmup-epochs 5 --seed 1) ;;
    fp16) flags=(--amp fp16 --channels-last --cuda-graphs --seed 1) ;;
    resnet20) flags=(--amp bf16 --channels-last --cuda-graphs --model resnet20 --batch-per-device 128
                     --epochs 164 --lr 0.1 --momentum 0.9 --weight-decay 1e-4 --schedule step
                     --milestones 82,123 --gamma 0.1) ;;
    *) echo "unknown run '$run': expected s1 s2 s3 notf32 acc4 acc4lin fp16 resnet20" >&2; exit 2 ;;
  esac
  left=$((DEADLINE - SECONDS))
  if ((left < 60)); then step "$run: not started ($left s left)"; continue; fi
  step "$run: mgpu train ${flags[*]}, cut off after $left s"
  timeout --signal=INT "$left" $B train "${DATA[@]}" "${flags[@]}" --out-dir "$OUT/$run" \
    > "$OUT/$run.log" 2>&1
  echo "rc $?"
  grep -E "^Epoch (1|35|70|164)/|total wall time|throughput" "$OUT/$run.log"
done
step "done"
