#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (into build-fuzz/, with ASan and UBSan) and runs each
# for SECONDS (default 180) on its corpus in fuzz/corpus/, which grows with what it finds.
# Needs Debian's clang and libclang-rt-14-dev (installed here if missing) and the LibTorch
# that scripts/bootstrap.sh set up. A finding stops its fuzzer and leaves crash-*/oom-* files
# in the current directory.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-180}"
if ! command -v clang++ > /dev/null || ! dpkg -s libclang-rt-14-dev > /dev/null 2>&1; then
  sudo_if_needed() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get install -y -qq clang libclang-rt-14-dev
fi
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DMGPU_FUZZ=ON -DMGPU_BUILD_TESTS=OFF \
  -DMGPU_WITH_PLOT=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build-fuzz -j "$(nproc)"
for target in idx cifar10 checkpoint image; do
  echo "== fuzz_$target, $SECONDS_EACH s"
  ASAN_OPTIONS=detect_leaks=0 "build-fuzz/fuzz/fuzz_$target" -max_total_time="$SECONDS_EACH" \
    -timeout=10 -rss_limit_mb=4096 "fuzz/corpus/$target" 2>&1 | grep -E "DONE|ERROR|SUMMARY" || true
done
