#!/usr/bin/env bash
# README's "Watching and comparing runs": one replica against two on the CPU (Fashion-MNIST,
# offline; ResNet-20, 3 epochs of 10,000 images), mgpu compare's table and picture, and a
# screenshot of TensorBoard showing both runs (a real server on 127.0.0.1, opened in headless
# Chromium: Debian's chromium, installed here if missing).
# Usage: benchmarks/compare_runs.sh [OUT]   (default /tmp/compare-runs; runs in OUT/runs)
# Writes OUT/runs/compare.{csv,png}, OUT/compare.txt (the table), OUT/tensorboard.png.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/compare-runs}
VENV=${MGPU_VENV:-$HOME/.cache/mgpu/venv}
MGPU=$PWD/build/mgpu
mkdir -p "$OUT"
cd "$OUT"
flags=(--dataset fashion-mnist --model resnet20 --epochs 3 --limit-train 10000 --limit-test 2000
  --verbose 2)
for run in one-replica two-replicas; do
  [[ -e runs/$run/summary.json ]] && continue
  extra=()
  [[ $run == two-replicas ]] && extra=(--cpu-replicas 2)
  "$MGPU" train "${flags[@]}" "${extra[@]}" --out-dir "runs/$run"
done
"$MGPU" compare runs/one-replica runs/two-replicas --out-dir runs | tee compare.txt

command -v chromium > /dev/null ||
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$VENV/bin/tensorboard" --logdir runs --host 127.0.0.1 --port "$port" > tensorboard.log 2>&1 &
server=$!
trap 'kill $server 2> /dev/null || true' EXIT
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/data/runs')" \
    2> /dev/null && break
  sleep 0.2
done
# The scalars dashboard, with time for its scripts to fetch and draw the curves.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,1100 \
  --virtual-time-budget=20000 --screenshot="$OUT/tensorboard.png" \
  "http://127.0.0.1:$port/?darkMode=false#scalars&tagFilter=epoch_(acc%7Closs)&_smoothingWeight=0" 2> chromium.log
echo "screenshot: $OUT/tensorboard.png"
