#!/usr/bin/env bash
# A timeline drawn from the real link: two nodes of scripts/nodes.sh behind a shaped link, one
# mgpu train process each, and node 0's interface counters read every 5 ms for 4 s of the
# second epoch, overlapped (--bucket-mb 1) and with --no-overlap: the bytes node 0 sent and
# received per 5 ms, as Mbit/s over time (docs/benchmarks.md, "Two nodes and a real link").
# Usage (root): benchmarks/link_timeline.sh [RATE]   (default 200mbit)
# Env: OUT (default /tmp/link-timeline), CIFAR (a folder with cifar-10-batches-bin/, made from
# ../shared/data's stand-in when missing), BATCH (32 per replica). Writes $OUT/link-timeline.png.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-200mbit}
OUT=${OUT:-/tmp/link-timeline}
BATCH=${BATCH:-32}
PY=${MGPU_VENV:-$HOME/.cache/mgpu/venv}/bin/python
MGPU=$PWD/build/mgpu
mkdir -p "$OUT"
scripts/nodes.sh --check --rate "$RATE" > /dev/null
CIFAR=${CIFAR:-$OUT/cifar}
if [[ ! -e $CIFAR/cifar-10-batches-bin/test_batch.bin ]]; then
  "$PY" ../shared/data/cifar10_from_jpeg.py --out "$CIFAR" > /dev/null
fi

# Inside node 0: its interface's byte counters every 5 ms for 4 s: "seconds tx rx".
cat > "$OUT/sample.py" << 'EOF'
import sys, time
base = "/sys/class/net/mgpu0/statistics/"
def read(name):
    with open(base + name) as f:
        return int(f.read())
rows, start = [], time.perf_counter()
while (now := time.perf_counter()) - start < 4:
    rows.append((now - start, read("tx_bytes"), read("rx_bytes")))
    time.sleep(0.005 - (time.perf_counter() - now) % 0.005)
with open(sys.argv[1], "w") as out:
    for (t0, tx0, rx0), (t1, tx1, rx1) in zip(rows, rows[1:]):
        dt = t1 - t0
        out.write(f"{t1:.4f} {(tx1 - tx0) * 8 / dt / 1e6:.1f} {(rx1 - rx0) * 8 / dt / 1e6:.1f}\n")
EOF

cat > "$OUT/run.sh" << 'EOF'
set -euo pipefail
name=$1; shift
for r in 1 0; do
  RANK=$r WORLD_SIZE=2 MASTER_ADDR=$MGPU_NODE_ADDR_0 MASTER_PORT=29500 \
    scripts/nodes.sh --on $r -- "$MGPU" train --gpus 0 --threads 1 --model minigooglenet \
    --dataset cifar10 --no-download --data-dir "$CIFAR" --epochs 2 \
    --limit-train $((24 * BATCH)) --limit-test 64 --batch-per-device "$BATCH" --verbose 1 \
    "$@" --out-dir "$OUT/$name/node$r" > "$OUT/$name.rank$r.log" 2>&1 &
done
for i in $(seq 1200); do grep -qsa 'Epoch 2/2' "$OUT/$name.rank0.log" && break; sleep 0.1; done
scripts/nodes.sh --on 0 -- "$PY" "$OUT/sample.py" "$OUT/$name.dat"
wait -n && wait -n
EOF
export OUT PY MGPU CIFAR BATCH
scripts/nodes.sh --rate "$RATE" -- bash "$OUT/run.sh" overlap --bucket-mb 1
scripts/nodes.sh --rate "$RATE" -- bash "$OUT/run.sh" no-overlap --no-overlap
gnuplot << EOF
set terminal pngcairo size 1000,520 font ",10"
set output "$OUT/link-timeline.png"
set multiplot layout 2,1 title "Node 0's link ($RATE, shaped both ways), 4 s of the second epoch: MiniGoogLeNet, batch $BATCH a node, Mbit/s per 5 ms"
set yrange [0:*]
set ylabel "Mbit/s"
set key top right
set title "--bucket-mb 1: each bucket sent while the backward pass goes on"
plot "$OUT/overlap.dat" using 1:2 with steps lw 1 title "sent", "" using 1:3 with steps lw 1 title "received"
set title "--no-overlap: one all-reduce after each backward pass"
set xlabel "seconds"
plot "$OUT/no-overlap.dat" using 1:2 with steps lw 1 title "sent", "" using 1:3 with steps lw 1 title "received"
unset multiplot
EOF
echo "picture: $OUT/link-timeline.png"
