#!/usr/bin/env bash
# Issue 6's GPU checks in one call (device tool, `carry: [".deps"]`, after scripts/gpu-prepare.sh
# here), in order of importance, each logged under /tmp/gpu-speed:
#   1. build, then the speed tests (CUDA graphs against eager, every level trains) and the
#      rest of the GPU tests,
#   2. one command for mgpu bench --levels all and the PyTorch peer (eager and torch.compile)
#      on the same card, side by side with their ratios,
#   3. the tutorial's 70 epochs at the best level (bf16) and in float32 (channels-last, fused
#      SGD, CUDA graphs), with evaluation, each cut off at the deadline.
# $OUT gets results.tar.gz and the summary lines. Usage: scripts/gpu-speed.sh [DEADLINE_S]
set -uo pipefail
cd "$(dirname "$0")/.."
DEADLINE="${1:-560}"
source scripts/gpu-common.sh
gpu_start gpu-speed
step "build"
scripts/gpu-build.sh "$OUT" || exit 1

step "GPU tests"
(cd build-gpu && timeout 120 ctest -j 4 --timeout 100 -R 'Gpu|Nccl|Speed|Cuda' --output-on-failure \
  > "$OUT/ctest.log" 2>&1)
grep -E "tests passed|Failed|\*\*\*|SKIP" "$OUT/ctest.log" | head -20

step "bench levels and the PyTorch peer, same card, one command"
timeout 240 python3 benchmarks/pytorch_reference.py --device cuda --steps 200 --warmup 30 \
  --mgpu build-gpu/mgpu --csv "$OUT/pytorch.csv" > "$OUT/bench.log" 2>&1
echo "rc $?" >> "$OUT/bench.log"
grep -vE "^(W|I)[0-9]{4}" "$OUT/bench.log" | tail -32

wait "$convert_pid"
B=build-gpu/mgpu
DATA=(--gpus 1 --dataset cifar10 --data-dir .deps/data --verbose 2 --epochs 70)
for run in "bf16:--amp bf16 --channels-last --cuda-graphs" "fp32:--channels-last --cuda-graphs"; do
  name=${run%%:*}
  left=$(((DEADLINE - SECONDS) / (name == "bf16" ? 2 : 1)))
  step "70 epochs, $name, cut off after $left s"
  # shellcheck disable=SC2086
  timeout --signal=INT "$left" $B train "${DATA[@]}" ${run#*:} --out-dir "$OUT/$name" \
    > "$OUT/$name.log" 2>&1
  echo "rc $?"
  grep -E "^Epoch (1|2|35|70)/" "$OUT/$name.log"
  tail -n 3 "$OUT/$name.log"
done
step "done"
