#!/usr/bin/env bash
# The first GPU call of a session (device tool, `carry: [".deps"]`, after scripts/gpu-prepare.sh
# here; the plan is docs/benchmarks.md, "The GPU calls"): correctness on the GPU, each part under
# a budget of its own (seconds), each result written as soon as it exists ($OUT/results.tar.gz
# is repacked after every part, so a call cut off still brings back what was done):
#   1. build: mgpu and the test files that hold GPU tests (-DMGPU_GPU_TESTS_ONLY=ON: 8 of 40,
#      compiled beside the libraries), from a fresh machine (BUILD_GPU_S, gpu-common.sh)   175
#   2. the GPU tests, 6 at a time: CUDA graphs against eager steps at every level and
#      setting, a failed capture's message, cuDNN's cache on a replica thread, the one-rank
#      NCCL group, models cloned onto the GPU; and CudaLaunchQueue, the probe: how many
#      launches a stalled stream accepts before one blocks the host (the premise of the
#      bound on steps in flight), its line kept in launch-queue.txt                          30
#   3. one-rank NCCL against the plain path, --deterministic, bit for bit: with overlap
#      (--bucket-mb 1) and with --no-overlap, three runs at once; beside them ResNet-20 and
#      airbench94 under strict --deterministic (a kernel without a deterministic version
#      stops the run and is named)                                                          22
#   total 227 s of budgets; x 1.25 = 284 s, within the first call's 300 s (5 minutes)
# The same comparison with --cuda-graphs and the bench are the second call, gpu-bench.sh.
# Usage: scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
failed=()
source scripts/gpu-common.sh
gpu_start gpu-check  # the CIFAR-10 stand-in converts while the build runs
plan 300 "build=$BUILD_GPU_S" "GPU tests=30" "one-rank NCCL against plain=22"

part "build" scripts/gpu-build.sh "$OUT" gpu-tests || { pack; exit 1; }
# -V: the probe prints its figure from a test that passes.
part "GPU tests" run_ctest "$OUT/ctest-gpu.log" 6 -V --timeout 25 -R "$GPU_TESTS" -E "$NOT_THERE" ||
  failed+=(gpu-tests)
grep -E "tests passed|Failed|\*\*\*|SKIP" "$OUT/ctest-gpu.log" | head -20
grep -o "launch queue:.*" "$OUT/ctest-gpu.log" | tee "$OUT/launch-queue.txt"
wait "$convert_pid"
tail -2 "$OUT/cifar.log"
B=build-gpu/mgpu
part "one-rank NCCL against plain" nccl_against_plain eager || failed+=(nccl)
((${#failed[@]} == 0)) || step "FAILED: ${failed[*]}"
step "done"
((${#failed[@]} == 0))
