#!/usr/bin/env bash
# Issue 26's comparison, in two calls of the plan in docs/benchmarks.md ("The GPU calls"; device
# tool, `carry: [".deps"]`, after scripts/gpu-prepare.sh here): airbench94 on one GPU, mgpu
# beside its PyTorch peer (benchmarks/airbench_reference.py, eager and torch.compile'd) and the
# `airbench` package from PyPI (lib_airbench94, eager), three seeds each, on the same CIFAR-10
# files: the time of each run and its final test accuracy with test-time augmentation. Target:
# mgpu >= 1.3x faster than the compiled peer at the same mean accuracy (within 0.2 points).
# Each part under a budget of its own (seconds); results repacked after every part.
#   call 1 (the target's two sides):
#     1. build: mgpu alone, from a fresh machine (BUILD_MGPU_S, gpu-common.sh)      150
#     2. mgpu train --model airbench94, 3 seeds (the recipe; bf16)                  45
#     3. the peer, compiled, 3 seeds (the first compiles from a cold cache, the others
#        mostly from inductor's cache)                                              93
#     total 288 s of budgets; x 1.25 = 360 s, a call of 6 minutes
#   call 2 (the rest):
#     1. build                                                                      150
#     2. the same with --cuda-graphs, 3 seeds                                       45
#     3. the peer, eager, 3 seeds                                                   45
#     4. airbench's train94 (the PyPI package), its warm-up and 3 runs              48
#     total 288 s of budgets; x 1.25 = 360 s, a call of 6 minutes
# Usage: scripts/gpu-airbench.sh 1|2
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
CALL="${1:-1}"
[[ $CALL == 1 || $CALL == 2 ]] || { echo "usage: scripts/gpu-airbench.sh 1|2 (which call)"; exit 2; }
source scripts/gpu-common.sh
gpu_start gpu-airbench
if [[ $CALL == 1 ]]; then
  plan 360 "build=$BUILD_MGPU_S" "mgpu airbench94=45" "peer compiled=93"
else
  plan 360 "build=$BUILD_MGPU_S" "mgpu airbench94 --cuda-graphs=45" "peer eager=45" \
    "airbench package=48"
fi

part "build" scripts/gpu-build.sh "$OUT" mgpu || { pack; exit 1; }
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
peer_runs() {  # $1: a name, then extra flags
  local name=$1; shift
  for seed in 1 2 3; do
    python3 benchmarks/airbench_reference.py train --data-dir .deps/data --device cuda \
      --seed $seed --json "$OUT/$name-$seed.json" "$@" > "$OUT/$name-$seed.log" 2>&1 || return 1
    tail -n 1 "$OUT/$name-$seed.log"
  done
}
# The PyPI package reads cifar10/{train,test}.pt (HWC uint8, as torchvision's) from the working
# directory; written here from the same binary files. It imports torchvision for Normalize only.
airbench_runs() {
  # (each here-document is a command of its own, its status checked after it: bash's `declare
  # -f`, which hands the function to the part's shell, misprints one inside a list)
  local dir="$GPU_TMP/airbench"
  mkdir -p "$dir" && tar -xzf .deps/airbench-0.1.8.tar.gz -C "$dir" || return 1
  python3 - <<'PY'
import os, sys, time, torch
sys.path.insert(0, "benchmarks")
from airbench_reference import read_cifar
(tx, ty), (vx, vy) = read_cifar(".deps/data")
out = os.path.join(os.environ["GPU_TMP"], "airbench", "cifar10")
os.makedirs(out, exist_ok=True)
for name, x, y in (("train", tx, ty), ("test", vx, vy)):
    torch.save({"images": x.permute(0, 2, 3, 1).contiguous(), "labels": y,
                "classes": [str(i) for i in range(10)]}, os.path.join(out, f"{name}.pt"))
PY
  # shellcheck disable=SC2181  # the here-document cannot carry `|| return` (above)
  (($? == 0)) || return 1
  # Without torchvision there, a stand-in for the one thing the package takes from it.
  if ! python3 -c "import torchvision" 2> /dev/null; then
    mkdir -p "$dir/shim/torchvision"
    echo "from . import transforms" > "$dir/shim/torchvision/__init__.py"
    printf '%s\n' "class Normalize:" \
      "    def __init__(self, mean, std): self.mean, self.std = mean, std" \
      "    def __call__(self, x): return (x - self.mean.to(x).view(-1, 1, 1)) / self.std.to(x).view(-1, 1, 1)" \
      > "$dir/shim/torchvision/transforms.py"
  fi
  (cd "$dir" && PYTHONPATH="$dir/airbench-0.1.8:$dir/shim" python3 -c "
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
if [[ $CALL == 1 ]]; then
  part "mgpu airbench94" mgpu_runs mgpu
  part "peer compiled" peer_runs peer-compiled --compile
else
  part "mgpu airbench94 --cuda-graphs" mgpu_runs mgpu-graphs --cuda-graphs
  part "peer eager" peer_runs peer
  part "airbench package" airbench_runs
fi
step "summary (seconds: mgpu's total wall time, the peer's; accuracy with test-time augmentation)"
for f in "$OUT"/mgpu*-?.log "$OUT"/peer*-?.log; do
  echo "$(basename "$f" .log): $(tail -n 1 "$f")"
done
step "done"
