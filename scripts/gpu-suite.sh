#!/usr/bin/env bash
# The test suite on the GPU machine but for the GPU tests (those are scripts/gpu-check.sh's),
# in two calls, odd- and even-numbered tests: LibTorch's own libraries there once made 30 of 87
# tests crash (docs/architecture.md), so the whole suite runs there too, but after a fresh
# build only half of it fits a call. Device tool, `carry: [".deps"]`, after
# scripts/gpu-prepare.sh here; the plan is docs/benchmarks.md, "The GPU calls". Budgets
# (seconds), results repacked after every part:
#   1. build: mgpu and the tests, from a fresh machine (BUILD_ALL_S, gpu-common.sh)     230
#   2. half of every test but the GPU tests and the GPU scripts' dry run, 12 at a time with
#      one thread each (most are a process start and a few steps; here, 2 cores, the whole
#      suite took 515 s of test time, the longest test 23 s alone)                      58
#   total 288 s of budgets; x 1.25 = 360 s, a call of 6 minutes
# Usage: scripts/gpu-suite.sh 1|2
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
HALF="${1:-1}"
[[ $HALF == 1 || $HALF == 2 ]] || { echo "usage: scripts/gpu-suite.sh 1|2 (which half)"; exit 2; }
source scripts/gpu-common.sh
gpu_start gpu-suite
plan 360 "build=$BUILD_ALL_S" "half $HALF of the suite=58"

part "build" scripts/gpu-build.sh "$OUT" all || { pack; exit 1; }
wait "$convert_pid"  # nothing here needs the data; the conversion's log comes back with the rest
part "half $HALF of the suite" run_ctest "$OUT/ctest.log" 12 --timeout 30 --output-on-failure \
  -I "$HALF,,2" -E "$GPU_TESTS|$NOT_THERE"
rc=$?
grep -E "tests passed|Failed|\*\*\*" "$OUT/ctest.log" | head -30
step "done"
exit $rc
