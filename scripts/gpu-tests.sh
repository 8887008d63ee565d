#!/usr/bin/env bash
# The GPU tests and the launch-queue probe, the second call of the plan (device tool,
# `carry: [".deps"]`, after scripts/gpu-prepare.sh here; docs/benchmarks.md, "The GPU calls").
# Budgets (seconds), results repacked after every part:
#   1. build: mgpu and the tests, from a fresh machine (on the machine the first call left
#      warm, only the tests' units: about 110 s; BUILD_ALL_S, gpu-common.sh)             255
#   2. the GPU tests, 6 at a time: CUDA graphs against eager steps at every level and
#      setting, a failed capture's message, cuDNN's cache on a replica thread, the one-rank
#      NCCL group, models cloned onto the GPU; and CudaLaunchQueue, the probe: how many
#      launches a stalled stream accepts before one blocks the host (the premise of the
#      bound on steps in flight), its line kept in launch-queue.txt                      30
#   total 285 s of budgets; x 1.25 = 356 s, within a call of 6 minutes
# Usage: scripts/gpu-tests.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
source scripts/gpu-common.sh
gpu_start gpu-tests
plan 360 "build=$BUILD_ALL_S" "GPU tests=30"

part "build" scripts/gpu-build.sh "$OUT" all || { pack; exit 1; }
# -V: the probe prints its figure from a test that passes.
part "GPU tests" run_ctest "$OUT/ctest-gpu.log" 6 -V --timeout 25 -R "$GPU_TESTS" -E "$NOT_THERE"
rc=$?
grep -E "tests passed|Failed|\*\*\*|SKIP" "$OUT/ctest-gpu.log" | head -20
grep -o "launch queue:.*" "$OUT/ctest-gpu.log" | tee "$OUT/launch-queue.txt"
wait "$convert_pid"  # nothing here needs the data; the conversion's log comes back with the rest
step "done"
exit $rc
