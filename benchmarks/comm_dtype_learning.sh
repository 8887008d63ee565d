#!/usr/bin/env bash
# What a 16-bit wire (--comm-dtype) does to learning: a short run of 2 CPU replicas for each
# type and seed, then each type's final figures (mean, sample standard deviation, range over the
# seeds) and whether its mean lies inside float32's seed range (docs/benchmarks.md, "Two nodes
# and a real link"). The replicas' all-reduce is the one processes use, bit for bit.
# Usage: benchmarks/comm_dtype_learning.sh [SEEDS]   (default 3)
# Env: OUT (default /tmp/comm-dtype), EPOCHS (3), TRAIN (4096 images), BATCH (32 per replica),
# MODEL (resnet20: MiniGoogLeNet's Keras batch-norm averages leave a short run's validation
# accuracy near chance, README.md's quick start says why).
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-3}
OUT=${OUT:-/tmp/comm-dtype}
EPOCHS=${EPOCHS:-3}
TRAIN=${TRAIN:-4096}
MODEL=${MODEL:-resnet20}
BATCH=${BATCH:-32}
PY=${MGPU_VENV:-$HOME/.cache/mgpu/venv}/bin/python
mkdir -p "$OUT"
for seed in $(seq 1 "$SEEDS"); do
  for type in float32 bf16 fp16; do
    ./build/mgpu train --gpus 0 --cpu-replicas 2 --threads 2 --model "$MODEL" \
      --dataset fashion-mnist --limit-train "$TRAIN" --limit-test 1000 --epochs "$EPOCHS" \
      --batch-per-device "$BATCH" --seed "$seed" --comm-dtype "$type" --verbose 0 \
      --out-dir "$OUT/$type-s$seed" > "$OUT/$type-s$seed.log" 2>&1
  done
done
"$PY" - "$OUT" "$SEEDS" << 'EOF'
import json, statistics, sys
out, seeds = sys.argv[1], int(sys.argv[2])
final = {t: [json.load(open(f"{out}/{t}-s{s}/summary.json"))["final"] for s in range(1, seeds + 1)]
         for t in ("float32", "bf16", "fp16")}
print("| --comm-dtype | " + " | ".join(["loss", "acc", "val_loss", "val_acc"]) + " |")
print("|---|---|---|---|---|")
for t, runs in final.items():
    cells = []
    for m in ("loss", "acc", "val_loss", "val_acc"):
        v = [r[m] for r in runs]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        cells.append(f"{statistics.mean(v):.4f} +- {sd:.4f} [{min(v):.4f}..{max(v):.4f}]")
    print(f"| {t} | " + " | ".join(cells) + " |")
for t in ("bf16", "fp16"):
    inside = []
    for m in ("loss", "acc", "val_loss", "val_acc"):
        ref = [r[m] for r in final["float32"]]
        mean = statistics.mean(r[m] for r in final[t])
        inside.append(f"{m} {'inside' if min(ref) <= mean <= max(ref) else 'OUTSIDE'}")
    print(f"{t}: mean against float32's seed range: " + ", ".join(inside))
EOF
