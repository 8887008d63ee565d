#!/usr/bin/env bash
# Run on the GPU machine (device tool, with .deps carried; see scripts/gpu-prepare.sh):
# builds against that machine's PyTorch, runs the tests (the GPU ones included), converts the
# CIFAR-10 stand-in, and runs the single-GPU and one-rank NCCL checks. Logs go to $OUT.
# Usage: scripts/gpu-check.sh [EPOCHS]
set -uo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${1:-3}"
OUT="${OUT:-/tmp/mgpu-out}"
mkdir -p "$OUT" /tmp/deps
for f in .deps/*.deb; do dpkg -x "$f" /tmp/deps; done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' | tee -a "$OUT/gpu.txt"

cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMGPU_PYTHON="$(command -v python3)" \
  -DMGPU_WITH_PLOT=OFF -DCMAKE_PREFIX_PATH=/tmp/deps/usr -DTORCH_CUDA_ARCH_LIST=9.0 \
  > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build build-gpu -j 16 > "$OUT/build.log" 2>&1 || { grep -m5 -A5 error "$OUT/build.log"; exit 1; }
(cd build-gpu && ctest -j 4 --output-on-failure > "$OUT/ctest.log" 2>&1); tail -5 "$OUT/ctest.log"

python3 .deps/cifar10_from_jpeg.py --out .deps/data > /dev/null
B=build-gpu/mgpu
COMMON="--dataset cifar10 --data-dir .deps/data --verbose 2 --epochs $EPOCHS"
$B train --gpus 1 $COMMON --out-dir "$OUT/gpu1" 2>&1 | tee "$OUT/gpu1.log"
$B train --gpus 1 --comm nccl $COMMON --out-dir "$OUT/nccl1" 2>&1 | tee "$OUT/nccl1.log"
$B bench --gpus 1 --steps 50 --warmup 10 --out-dir "$OUT/bench" 2>&1 | tee "$OUT/bench.log"
echo "== summary"; grep -h "Epoch\|throughput\|wall" "$OUT"/gpu1.log "$OUT"/nccl1.log
