#!/usr/bin/env bash
# On the GPU machine: builds build-gpu/ against that machine's PyTorch, with the Debian headers
# that scripts/gpu-prepare.sh put in .deps/ (unpacked to $GPU_TMP/deps). Logs go to the folder $1;
# TARGET (default all) is all (mgpu and the tests), mgpu alone (the calls that run no test:
# about 40% of the units), or gpu-tests (mgpu and only the 8 test files that hold GPU tests,
# -DMGPU_GPU_TESTS_ONLY=ON: the first call). Used by every scripts/gpu-*.sh call.
# Usage: scripts/gpu-build.sh LOG_DIR [all|mgpu|gpu-tests]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
source scripts/gpu-common.sh  # defines: GPU_TMP
LOGS="${1:?usage: scripts/gpu-build.sh LOG_DIR [all|mgpu|gpu-tests]}"
TARGET="${2:-all}"
[[ $TARGET == all || $TARGET == mgpu || $TARGET == gpu-tests ]] ||
  { echo "TARGET '$TARGET': expected all, mgpu or gpu-tests"; exit 2; }
gpu_tests_only=OFF; [[ $TARGET == gpu-tests ]] && gpu_tests_only=ON
mkdir -p "$LOGS" "$GPU_TMP/deps"
for f in .deps/*.deb; do dpkg -x "$f" "$GPU_TMP/deps"; done
zlib_flags=()
if [[ ! -e /usr/include/zlib.h ]]; then  # headers from the .deb, the system's shared library
  libz=$(ldconfig -p | awk '/libz\.so\.1 .*x86-64/ {print $NF; exit}')
  zlib_flags=(-DZLIB_INCLUDE_DIR="$GPU_TMP/deps/usr/include" "-DZLIB_LIBRARY=$libz")
fi
# One test file a unit (-DMGPU_UNITY_TEST_BATCH=1) and four library sources a unit: on 16 cores
# the files compile side by side, as the build budget of docs/benchmarks.md assumes, not eight to
# a unit on one core (the batches that suit the 2-core development machine).
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMGPU_PYTHON="$(command -v python3)" \
  -DMGPU_WITH_PLOT=OFF -DMGPU_WITH_DOWNLOAD=OFF -DCMAKE_PREFIX_PATH="$GPU_TMP/deps/usr" \
  -DTORCH_CUDA_ARCH_LIST=9.0 -DGTest_DIR="$GPU_TMP/deps/usr/lib/x86_64-linux-gnu/cmake/GTest" \
  -DMGPU_GPU_TESTS_ONLY="$gpu_tests_only" -DMGPU_UNITY_TEST_BATCH=1 -DMGPU_UNITY_BATCH=4 \
  "${zlib_flags[@]}" > "$LOGS/configure.log" 2>&1 || { tail -40 "$LOGS/configure.log"; exit 1; }
grep -i "nccl\|libtorch from" "$LOGS/configure.log"
targets=(); [[ $TARGET == mgpu ]] && targets=(--target mgpu)
cmake --build build-gpu -j "$(nproc)" "${targets[@]}" > "$LOGS/build.log" 2>&1
rc=$?
# Each unit's start and end (ms): what the next plan's build budget can rest on.
cp build-gpu/.ninja_log "$LOGS/ninja-log.txt" 2>/dev/null
((rc == 0)) || { grep -m10 -B2 -A10 "error" "$LOGS/build.log"; exit 1; }
[[ $TARGET != mgpu ]] || exit 0
# The needed libraries' order no longer decides where std::filesystem binds (it is linked into
# each binary: docs/architecture.md); Toolchain.* in the suite checks that. Kept for the record.
{ readelf -d build-gpu/tests/mgpu_tests | grep NEEDED | head -4
  build-gpu/tests/mgpu_tests --gtest_filter="Toolchain.*" --gtest_brief=1; } > "$LOGS/link.txt" 2>&1
tail -3 "$LOGS/link.txt"
