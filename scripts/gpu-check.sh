#!/usr/bin/env bash
# Run on the GPU machine (device tool, `carry: [".deps"]`, after scripts/gpu-prepare.sh here):
# builds against that machine's PyTorch and runs the checks below in this order, each under a
# budget of its own, writing each result as soon as it has it ($OUT/results.tar.gz is repacked
# after every part, so a call cut off at its limit still brings back what was done). Budgets
# in seconds; the measured figures behind them are in docs/benchmarks.md ("GPU check budgets").
#   1. build                                                                  120
#   2. the GPU tests (Gpu|Nccl|StepGraph|Cuda: graphs, a failed capture, cuDNN's cache on a
#      replica thread, NCCL)                                                   90
#   3. one-rank NCCL against the plain path, --deterministic, bit for bit      60
#   4. bench --levels cuda-graphs at --warmup 3 and --warmup 30 (the capture is never timed)  50
#   5. bench --gpus 1 (step time and the NCCL all-reduce)                      30
#   6. the rest of the test suite                                             150
#   7. the tutorial's run (--epochs EPOCHS) until DEADLINE_S after the start, only if 1-6 passed
#      (at least 40 s are left for it when every part uses its whole budget)
# Usage: scripts/gpu-check.sh [EPOCHS] [DEADLINE_S]   (defaults 70 and 540: one call of at most
# 9 minutes, so that a rerun fits the session's 15)
set -uo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-70}"
DEADLINE="${2:-540}"
failed=()
source scripts/gpu-common.sh
gpu_start gpu-check  # the CIFAR-10 stand-in converts while the build runs
plan "build 120" "GPU tests 90" "NCCL against plain 60" "bench warm-up 50" "bench 30" \
  "rest of the suite 150" "the tutorial's run until ${DEADLINE} s"

part "build" 120 scripts/gpu-build.sh "$OUT" || { pack; exit 1; }

part "GPU tests" 90 bash -c "cd build-gpu && ctest -j 4 --timeout 100 -R 'Gpu|Nccl|StepGraph|Cuda' \
  --output-on-failure > '$OUT/ctest-gpu.log' 2>&1" || failed+=(gpu-tests)
grep -E "tests passed|Failed|\*\*\*|first forward" "$OUT/ctest-gpu.log" | head -20

wait "$convert_pid"
tail -2 "$OUT/cifar.log"
B=build-gpu/mgpu
DATA=(--dataset cifar10 --data-dir .deps/data --verbose 2)
SHORT=(--limit-train 12800 --limit-test 2000 --epochs 2 --deterministic)
nccl_against_plain() {
  $B train --gpus 1 "${DATA[@]}" "${SHORT[@]}" --out-dir "$OUT/plain" > "$OUT/plain.log" 2>&1 &&
  $B train --gpus 1 --comm nccl "${DATA[@]}" "${SHORT[@]}" --out-dir "$OUT/nccl" > "$OUT/nccl.log" 2>&1 &&
  cmp -s <(cut -d, -f1,2,4- "$OUT/plain/history.csv") <(cut -d, -f1,2,4- "$OUT/nccl/history.csv") &&
  python3 scripts/compare_weights.py "$OUT/plain/model.pt" "$OUT/nccl/model.pt"
}
part "one-rank NCCL against the plain path" 60 nccl_against_plain || failed+=(nccl)
tail -n 3 "$OUT/plain.log" "$OUT/nccl.log"

bench_warmups() {
  for w in 3 30; do
    $B bench --gpus 1 --levels cuda-graphs --steps 200 --warmup $w --out-dir "$OUT/bench-w$w" \
      > "$OUT/bench-w$w.log" 2>&1 || return 1
    grep -A1 "^level" "$OUT/bench-w$w.log" | tail -1
  done
}
part "bench cuda-graphs at --warmup 3 and 30" 50 bench_warmups || failed+=(bench-warmup)

part "bench" 30 bash -c "$B bench --gpus 1 --steps 300 --warmup 30 --out-dir '$OUT/bench' \
  > '$OUT/bench.log' 2>&1; rc=\$?; tail -n 6 '$OUT/bench.log'; exit \$rc" || failed+=(bench)

part "rest of the suite" 150 bash -c "cd build-gpu && ctest -j 8 --timeout 120 \
  -E 'Gpu|Nccl|StepGraph|Cuda' --output-on-failure > '$OUT/ctest.log' 2>&1" || failed+=(tests)
grep -E "tests passed|Failed|\*\*\*" "$OUT/ctest.log" | head -20

if ((${#failed[@]})); then
  step "FAILED: ${failed[*]}; the long run is skipped"
  exit 1
fi
left=$((DEADLINE - SECONDS))
step "the tutorial's run: $EPOCHS epochs, cut off after $left s"
timeout --signal=INT "$left" $B train --gpus 1 "${DATA[@]}" --epochs "$EPOCHS" --out-dir "$OUT/full" \
  > "$OUT/full.log" 2>&1
echo "rc $?"
cp "$OUT/full/history.csv" "$OUT/full/summary.json" "$FINAL/" 2>/dev/null
tail -n 14 "$OUT/full.log"
step "done"
