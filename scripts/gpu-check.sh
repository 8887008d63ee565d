#!/usr/bin/env bash
# Run on the GPU machine (device tool, with .deps carried; see scripts/gpu-prepare.sh):
# builds against that machine's PyTorch and runs, in order of importance,
#   1. the test suite (the GPU tests included),
#   2. the one-rank NCCL run against the plain single-GPU path (deterministic kernels, so the
#      two must agree bit for bit),
#   3. mgpu bench --gpus 1 (step time and the full-gradient NCCL all-reduce),
#   4. the tutorial's run on CIFAR-10 (--epochs EPOCHS), cut off at the script's deadline;
#      history.csv keeps every finished epoch.
# Step 4 is skipped if any earlier step failed, so that device time is left for a rerun.
# Everything lands in /tmp/gpu-check; $OUT gets results.tar.gz of it (the device tool brings
# back few files) and the long run's history.csv and log.
# Usage: scripts/gpu-check.sh [EPOCHS] [DEADLINE_S]
set -uo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-70}"
DEADLINE="${2:-540}"  # seconds after the start by which the script must be done
mkdir -p /tmp/deps
failed=()
source scripts/gpu-common.sh
gpu_start gpu-check  # the CIFAR-10 stand-in converts while the build runs

step "build"
scripts/gpu-build.sh "$OUT" || exit 1
step "built"

step "tests"
(cd build-gpu && timeout 150 ctest -j 8 --timeout 120 --output-on-failure > "$OUT/ctest.log" 2>&1) ||
  failed+=(tests)
grep -E "tests passed|Failed|Skipped|\*\*\*" "$OUT/ctest.log" | head -20

wait "$convert_pid"
tail -2 "$OUT/cifar.log"
B=build-gpu/mgpu
DATA=(--dataset cifar10 --data-dir .deps/data --verbose 2)

step "one-rank NCCL against the plain single-GPU path"
SHORT=(--limit-train 12800 --limit-test 2000 --epochs 2 --deterministic)
$B train --gpus 1 "${DATA[@]}" "${SHORT[@]}" --out-dir "$OUT/plain" > "$OUT/plain.log" 2>&1 ||
  failed+=(plain)
$B train --gpus 1 --comm nccl "${DATA[@]}" "${SHORT[@]}" --out-dir "$OUT/nccl" > "$OUT/nccl.log" 2>&1 ||
  failed+=(nccl)
tail -4 "$OUT/plain.log" "$OUT/nccl.log"
cat "$OUT/plain/history.csv" "$OUT/nccl/history.csv"
if cmp -s <(cut -d, -f1,2,4- "$OUT/plain/history.csv") <(cut -d, -f1,2,4- "$OUT/nccl/history.csv") &&
   python3 scripts/compare_weights.py "$OUT/plain/model.pt" "$OUT/nccl/model.pt"; then
  echo "SAME: the history (all but seconds) and every weight are identical"
else
  echo "DIFFERENT"; failed+=(same)
  # Is the plain path itself reproducible? A second plain run tells.
  $B train --gpus 1 "${DATA[@]}" "${SHORT[@]}" --out-dir "$OUT/plain2" > "$OUT/plain2.log" 2>&1
  python3 scripts/compare_weights.py "$OUT/plain/model.pt" "$OUT/plain2/model.pt"
fi

step "bench"
$B bench --gpus 1 --steps 300 --warmup 30 --out-dir "$OUT/bench" 2>&1 | tee "$OUT/bench.log" ||
  failed+=(bench)

if ((${#failed[@]})); then
  step "FAILED: ${failed[*]}; the long run is skipped"
  exit 1
fi
left=$((DEADLINE - SECONDS))
step "the tutorial's run: $EPOCHS epochs, cut off after $left s"
pack
timeout --signal=INT "$left" $B train --gpus 1 "${DATA[@]}" --epochs "$EPOCHS" --out-dir "$OUT/full" \
  > "$FINAL/full.log" 2>&1
echo "rc $?"
cp "$OUT/full/history.csv" "$OUT/full/summary.json" "$FINAL/" 2>/dev/null
tail -n 14 "$FINAL/full.log"
step "done"
