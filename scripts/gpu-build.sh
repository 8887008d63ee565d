#!/usr/bin/env bash
# On the GPU machine: builds build-gpu/ against that machine's PyTorch, with the Debian headers
# that scripts/gpu-prepare.sh put in .deps/ (unpacked to /tmp/deps). Logs go to the folder $1.
# Used by scripts/gpu-check.sh and scripts/gpu-speed.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS="${1:?usage: scripts/gpu-build.sh LOG_DIR}"
mkdir -p "$LOGS" /tmp/deps
for f in .deps/*.deb; do dpkg -x "$f" /tmp/deps; done
zlib_flags=()
if [[ ! -e /usr/include/zlib.h ]]; then  # headers from the .deb, the system's shared library
  libz=$(ldconfig -p | awk '/libz\.so\.1 .*x86-64/ {print $NF; exit}')
  zlib_flags=(-DZLIB_INCLUDE_DIR=/tmp/deps/usr/include "-DZLIB_LIBRARY=$libz")
fi
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMGPU_PYTHON="$(command -v python3)" \
  -DMGPU_WITH_PLOT=OFF -DMGPU_WITH_DOWNLOAD=OFF -DCMAKE_PREFIX_PATH=/tmp/deps/usr -DTORCH_CUDA_ARCH_LIST=9.0 \
  -DGTest_DIR=/tmp/deps/usr/lib/x86_64-linux-gnu/cmake/GTest "${zlib_flags[@]}" \
  > "$LOGS/configure.log" 2>&1 || { tail -40 "$LOGS/configure.log"; exit 1; }
grep -i "nccl\|libtorch from" "$LOGS/configure.log"
cmake --build build-gpu -j 16 > "$LOGS/build.log" 2>&1 ||
  { grep -m10 -B2 -A10 "error" "$LOGS/build.log"; exit 1; }
# The needed libraries' order no longer decides where std::filesystem binds (it is linked into
# each binary: docs/architecture.md); Toolchain.* in the suite checks that. Kept for the record.
{ readelf -d build-gpu/tests/mgpu_tests | grep NEEDED | head -4
  build-gpu/tests/mgpu_tests --gtest_filter="Toolchain.*" --gtest_brief=1; } > "$LOGS/link.txt" 2>&1
tail -3 "$LOGS/link.txt"
