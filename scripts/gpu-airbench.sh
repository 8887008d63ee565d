#!/usr/bin/env bash
# Issue 26's GPU call (device tool, `carry: [".deps"]`, after scripts/gpu-prepare.sh here):
# airbench94 on one GPU, mgpu beside its PyTorch peer (benchmarks/airbench_reference.py, eager
# and torch.compile'd) and the `airbench` package from PyPI (lib_airbench94, eager), each three
# seeds, on the same CIFAR-10 files: the time of each run and its final test accuracy with
# test-time augmentation. Target: mgpu >= 1.3x faster than the compiled peer at the same mean
# accuracy. Each part under a budget of its own (seconds); results repacked after every part:
#   1. build                                                           120
#   2. mgpu train --model airbench94, 3 seeds (the recipe; bf16)        90
#   3. the same with --cuda-graphs                                       90
#   4. the peer, eager, 3 seeds                                          90
#   5. the peer, compiled, 3 seeds                                      120
#   6. airbench's train94 (the PyPI package), 3 runs                     60
# Usage: scripts/gpu-airbench.sh   (about 9 minutes at most)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-common.sh
gpu_start gpu-airbench
plan "build 120" "mgpu 90" "mgpu --cuda-graphs 90" "peer eager 90" "peer compiled 120" \
  "airbench package 60"

part "build" 120 scripts/gpu-build.sh "$OUT" || { pack; exit 1; }
wait "$convert_pid"
B=build-gpu/mgpu
DATA=(--dataset cifar10 --data-dir .deps/data --gpus 1)
mgpu_runs() {  # $1: a name, then extra flags
  local name=$1; shift
  for seed in 1 2 3; do
    $B train --model airbench94 "${DATA[@]}" --seed $seed --verbose 2 "$@" \
      --out-dir "$OUT/$name-$seed" > "$OUT/$name-$seed.log" 2>&1 || return 1
    tail -n 1 "$OUT/$name-$seed.log"
  done
}
part "mgpu airbench94" 90 mgpu_runs mgpu
part "mgpu airbench94 --cuda-graphs" 90 mgpu_runs mgpu-graphs --cuda-graphs
peer_runs() {  # $1: a name, then extra flags
  local name=$1; shift
  for seed in 1 2 3; do
    python3 benchmarks/airbench_reference.py train --data-dir .deps/data --device cuda \
      --seed $seed --json "$OUT/$name-$seed.json" "$@" > "$OUT/$name-$seed.log" 2>&1 || return 1
    tail -n 1 "$OUT/$name-$seed.log"
  done
}
part "peer eager" 90 peer_runs peer
part "peer compiled" 120 peer_runs peer-compiled --compile
# The PyPI package reads cifar10/{train,test}.pt (HWC uint8, as torchvision's) from the working
# directory; written here from the same binary files. It imports torchvision for Normalize only.
airbench_runs() {
  # (each here-document is a command of its own, its status checked after it: bash's `declare
  # -f`, which hands the function to the part's shell, misprints one inside a list)
  mkdir -p /tmp/airbench && tar -xzf .deps/airbench-0.1.8.tar.gz -C /tmp/airbench || return 1
  python3 - <<'PY'
import os, sys, time, torch
sys.path.insert(0, "benchmarks")
from airbench_reference import read_cifar
(tx, ty), (vx, vy) = read_cifar(".deps/data")
os.makedirs("/tmp/airbench/cifar10", exist_ok=True)
for name, x, y in (("train", tx, ty), ("test", vx, vy)):
    torch.save({"images": x.permute(0, 2, 3, 1).contiguous(), "labels": y,
                "classes": [str(i) for i in range(10)]}, f"/tmp/airbench/cifar10/{name}.pt")
PY
  (($? == 0)) || return 1
  # Without torchvision there, a stand-in for the one thing the package takes from it.
  if ! python3 -c "import torchvision" 2> /dev/null; then
    mkdir -p /tmp/airbench/shim/torchvision
    echo "from . import transforms" > /tmp/airbench/shim/torchvision/__init__.py
    printf '%s\n' "class Normalize:" \
      "    def __init__(self, mean, std): self.mean, self.std = mean, std" \
      "    def __call__(self, x): return (x - self.mean.to(x).view(-1, 1, 1)) / self.std.to(x).view(-1, 1, 1)" \
      > /tmp/airbench/shim/torchvision/transforms.py
  fi
  (cd /tmp/airbench && PYTHONPATH=/tmp/airbench/airbench-0.1.8:/tmp/airbench/shim python3 -c "
import time, torch, airbench
airbench.warmup94(verbose=False)
for run in range(3):
    torch.cuda.synchronize(); t = time.perf_counter()
    model = airbench.train94(run=run)
    torch.cuda.synchronize(); print('airbench train94 run', run, 'wall', round(time.perf_counter() - t, 2), 's', flush=True)
") > "$OUT/airbench-package.log" 2>&1
  local rc=$?
  tail -n 12 "$OUT/airbench-package.log"
  return $rc
}
part "airbench package" 60 airbench_runs
step "summary (seconds: mgpu's total wall time, the peer's; accuracy with test-time augmentation)"
for f in "$OUT"/mgpu*-?.log "$OUT"/peer*-?.log; do
  echo "$(basename "$f" .log): $(tail -n 1 "$f")"
done
step "done"
