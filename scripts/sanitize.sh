#!/usr/bin/env bash
# Builds the project and its tests with AddressSanitizer and UndefinedBehaviorSanitizer into
# build-asan/ and runs the suite there (but the four below). Run after scripts/bootstrap.sh.
# LibTorch itself is not instrumented: leak reports from its static state are not ours, so leak
# detection is off; any other ASan or UBSan report aborts the test that caused it.
# Four long learning runs are left out (docs/reliability.md, "Sanitizers"): on the 2-core
# development machine without bfloat16 instructions they are 1,200 s of the plain suite's
# 2,700 s of test time, their code runs sanitized in the shorter tests, and with them the two
# suites together came near CI's 90 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
LONG='^(CliBinary\.TheReadmesQuickStartLearnsAsItShows|Speed\.Bf16AutocastTrainsKeepsFloat32WeightsAndEndsWithTheStep|Airbench94Binary\.ResumedFromAMidRunCheckpointItEndsAsTheUninterruptedRun|Training\.LearnsPatternsAndTheLossFalls)$'
cmake -S . -B build-asan -G Ninja -DMGPU_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build-asan -j "$(nproc)"
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j2 -E "$LONG"
