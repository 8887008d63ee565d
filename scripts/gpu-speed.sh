#!/usr/bin/env bash
# Issue 6's GPU checks in one call (device tool, `carry: [".deps"]`, after scripts/gpu-prepare.sh
# here), in this order, each under a budget of its own (seconds), each result written as soon as
# it exists ($OUT/results.tar.gz is repacked after every part):
#   1. build                                                                   120
#   2. the GPU tests (CUDA graphs against eager, every level trains, NCCL)       90
#   3. mgpu bench --levels all and the PyTorch peer on the same card, eager levels first, then
#      torch.compile (30-90 s of compiling each from a cold cache): every row and its ratio is
#      printed and written to pytorch.csv when measured; no configuration starts after 150 s  200
#   4. the tutorial's 70 epochs at the best level (bf16) and in float32 (channels-last, CUDA
#      graphs), with evaluation, each cut off at the deadline (history.csv keeps every epoch)
# Usage: scripts/gpu-speed.sh [DEADLINE_S]   (default 540: one call of at most 9 minutes)
set -uo pipefail
cd "$(dirname "$0")/.."
DEADLINE="${1:-540}"
source scripts/gpu-common.sh
gpu_start gpu-speed
plan "build 120" "GPU tests 90" "bench levels beside PyTorch 200" \
  "70 epochs bf16, then float32, until ${DEADLINE} s"

part "build" 120 scripts/gpu-build.sh "$OUT" || { pack; exit 1; }

part "GPU tests" 90 bash -c "cd build-gpu && ctest -j 4 --timeout 80 \
  -R 'Gpu|Nccl|Cuda|StepGraph' --output-on-failure > '$OUT/ctest.log' 2>&1"
grep -E "tests passed|Failed|\*\*\*|SKIP" "$OUT/ctest.log" | head -20

part "bench levels and the PyTorch peer, same card, one command" 200 bash -c \
  "python3 benchmarks/pytorch_reference.py --device cuda --steps 200 --warmup 30 --budget 150 \
   --mgpu build-gpu/mgpu --csv '$OUT/pytorch.csv' > '$OUT/bench.log' 2>&1"
grep -vE "^(W|I)[0-9]{4}" "$OUT/bench.log" | tail -32

wait "$convert_pid"
B=build-gpu/mgpu
DATA=(--gpus 1 --dataset cifar10 --data-dir .deps/data --verbose 2 --epochs 70)
for run in "bf16:--amp bf16 --channels-last --cuda-graphs" "fp32:--channels-last --cuda-graphs"; do
  name=${run%%:*}
  share=1; [[ $name == bf16 ]] && share=2  # bf16 leaves half of the time to float32
  left=$(((DEADLINE - SECONDS) / share))
  step "70 epochs, $name, cut off after $left s"
  # shellcheck disable=SC2086
  timeout --signal=INT "$left" $B train "${DATA[@]}" ${run#*:} --out-dir "$OUT/$name" \
    > "$OUT/$name.log" 2>&1
  echo "rc $?"
  grep -E "^Epoch (1|2|35|70)/" "$OUT/$name.log"
  tail -n 3 "$OUT/$name.log"
  pack
done
step "done"
