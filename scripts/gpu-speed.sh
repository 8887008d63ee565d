#!/usr/bin/env bash
# Speed beside PyTorch on the same card, in one call (device tool, `carry: [".deps"]`, after
# scripts/gpu-prepare.sh here; the second call of the plan in docs/benchmarks.md, "The GPU
# calls"), each part under a budget of its own (seconds), each result written as soon as it
# exists ($OUT/results.tar.gz is repacked after every part):
#   1. build: mgpu alone, from a fresh machine (BUILD_MGPU_S, gpu-common.sh)            150
#   2. mgpu bench --levels all and PyTorch eager at each level (benchmarks/pytorch_reference.py,
#      one command: mgpu's rows first, then PyTorch's with their ratios), to eager.csv      50
#   3. torch.compile, the CUDA-graph level first (mode="reduce-overhead", the likeliest
#      fastest peer), then fp32 and the levels between: 30-60 s of compiling each from a cold
#      cache, so none starts after 40 s; rows to compile.csv as measured, their ratios to
#      mgpu's rows of part 2 (same card, same call) worked out from the two logs             88
#   total 288 s of budgets; x 1.25 = 360 s, a call of 6 minutes
# The 70-epoch run is a call of its own (scripts/gpu-fidelity.sh s1).
# Usage: scripts/gpu-speed.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
source scripts/gpu-common.sh
gpu_start gpu-speed
plan 360 "build=$BUILD_MGPU_S" "mgpu and PyTorch eager=50" "torch.compile=88"

part "build" scripts/gpu-build.sh "$OUT" mgpu || { pack; exit 1; }
P=(python3 benchmarks/pytorch_reference.py --device cuda --steps 200 --warmup 30)
eager() {
  "${P[@]}" --modes eager --mgpu build-gpu/mgpu --csv "$OUT/eager.csv" > "$OUT/eager.log" 2>&1
  local rc=$?
  grep -vE "^(W|I)[0-9]{4}" "$OUT/eager.log" | tail -24
  return $rc
}
part "mgpu and PyTorch eager" eager
compiled() {
  "${P[@]}" --modes compile --levels cuda-graphs,fp32,bf16,fused-sgd,channels-last --budget 40 \
    --csv "$OUT/compile.csv" > "$OUT/compile.log" 2>&1
  local rc=$?
  grep -vE "^(W|I)[0-9]{4}" "$OUT/compile.log" | tail -12
  return $rc
}
part "torch.compile" compiled
step "done"
