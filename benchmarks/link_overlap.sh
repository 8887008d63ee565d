#!/usr/bin/env bash
# The overlapped all-reduce on a real (virtual) link: two nodes of scripts/nodes.sh, one mgpu
# process each, the link shaped by tc to each rate in turn (docs/benchmarks.md, "Two nodes and
# a real link"). For each rate it measures:
#   - the link: one all-gather of MiniGoogLeNet's gradient (6.6 MB, mgpu's Gloo all-reduce of
#     two ranks) and of 4 bytes, medians of 10, with the venv's torch (the same Gloo);
#   - mgpu train across the nodes, per configuration (DDP's 25 MiB buckets, smaller buckets,
#     --no-overlap, --comm-dtype bf16): the median ms/step of epochs 2.., and the bytes node 0
#     sent per step (its interface's counter over the run, divided by the steps);
#   - the share of the all-reduce hidden: (no-overlap step - step) / link all-reduce (for
#     --comm-dtype bf16 the all-gather of the gradient in bfloat16);
#   - mgpu bench --cpu-replicas 2 behind MGPU_SIM_LINK set to the link's measured speed, for
#     the same bucket sizes: the simulator's step times beside the real ones.
# Usage (root): benchmarks/link_overlap.sh [RATE ...]   (default: 1gbit 200mbit; "none": the
# link unshaped). CONFIGS: a space-separated subset of the configurations' names below.
# Env: STEPS (per epoch, default 12), BATCH (per replica, default 32), OUT (default
# /tmp/link-overlap), CIFAR (a folder with cifar-10-batches-bin/; default $OUT/cifar, made from
# ../shared/data's stand-in when missing: mgpu bench's images are 3x32x32, so the runs use
# CIFAR-10's). Prints a markdown table and writes $OUT/link.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
rates=("$@")
[[ ${#rates[@]} -gt 0 ]] || rates=(1gbit 200mbit)
STEPS=${STEPS:-12}
BATCH=${BATCH:-32}
OUT=${OUT:-/tmp/link-overlap}
MGPU=$PWD/build/mgpu
PY=${MGPU_VENV:-$HOME/.cache/mgpu/venv}/bin/python
mkdir -p "$OUT"
scripts/nodes.sh --check > /dev/null
CIFAR=${CIFAR:-$OUT/cifar}
if [[ ! -e $CIFAR/cifar-10-batches-bin/test_batch.bin ]]; then
  "$PY" ../shared/data/cifar10_from_jpeg.py --out "$CIFAR" > /dev/null
fi

limit=$((STEPS * BATCH * 2))
train_args="train --gpus 0 --threads 1 --model minigooglenet --dataset cifar10 --no-download
  --data-dir $CIFAR --epochs 3 --limit-train $limit --limit-test 64 --batch-per-device $BATCH
  --verbose 1 --seed 1"

# The link's all-gather times (ms) for 6.6 MB and for 4 bytes, between the two nodes.
cat > "$OUT/allgather.py" << 'EOF'
import os, statistics, sys, time, datetime
import torch, torch.distributed as dist
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
def median_ms(numel, dtype=torch.float32):
    t = torch.ones(numel, dtype=dtype)
    rows = [torch.empty_like(t) for _ in range(2)]
    times = []
    for i in range(12):
        dist.barrier()
        start = time.perf_counter()
        dist.all_gather(rows, t)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[2:])
big, small, half = median_ms(1651114), median_ms(1), median_ms(1651114, torch.bfloat16)
if dist.get_rank() == 0:
    print(f"{big:.2f} {small:.3f} {half:.2f}")
EOF

# Inside scripts/nodes.sh: one configuration's two ranks; prints "ms_per_step bytes_per_step".
cat > "$OUT/run.sh" << 'EOF'
set -euo pipefail
name=$1; shift
tx() { ip -n "$MGPU_NODE_NS_0" -s -j link show mgpu0 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'; }
before=$(tx)
for r in 1 0; do
  RANK=$r WORLD_SIZE=2 MASTER_ADDR=$MGPU_NODE_ADDR_0 MASTER_PORT=29500 GLOO_SOCKET_IFNAME=mgpu0 \
    scripts/nodes.sh --on $r -- "$MGPU" $TRAIN_ARGS "$@" --out-dir "$OUT/$name/node$r" \
    > "$OUT/$name.rank$r.log" 2>&1 &
done
wait -n && wait -n
after=$(tx)
# Keras's bar ends each epoch with "NNNms/step"; epochs 2.. (the first warms up).
ms=$(grep -ao '[0-9]*ms/step' "$OUT/$name.rank0.log" | tail -n +2 | tr -d 'ms/step' | sort -n |
  awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
echo "$ms $(( (after - before) / (3 * STEPS) ))"
EOF
export OUT PY MGPU STEPS TRAIN_ARGS="$train_args"

configs=("ddp-25:--bucket-mb 25" "bucket-4:--bucket-mb 4" "bucket-1:--bucket-mb 1"
  "bucket-0.25:--bucket-mb 0.25" "no-overlap:--no-overlap" "bf16-1:--bucket-mb 1 --comm-dtype bf16"
  "bf16-no-overlap:--no-overlap --comm-dtype bf16")
echo "rate,config,link_allreduce_ms,link_latency_ms,ms_per_step,no_overlap_ms,hidden,bytes_per_step,sim_ms_per_step,sim_no_overlap_ms" > "$OUT/link.csv"
echo "| rate | configuration | all-reduce on the link (ms) | step (ms) | --no-overlap step (ms) | hidden | bytes sent per step | simulated step (ms) | simulated --no-overlap (ms) |"
echo "|---|---|---|---|---|---|---|---|---|"
for rate in "${rates[@]}"; do
  shape=(--rate "$rate"); [[ $rate == none ]] && shape=()
  read -r ar lat ar16 < <(scripts/nodes.sh "${shape[@]}" -- bash -c '
    for r in 1 0; do RANK=$r WORLD_SIZE=2 MASTER_ADDR=$MGPU_NODE_ADDR_0 MASTER_PORT=29501 \
      GLOO_SOCKET_IFNAME=mgpu0 scripts/nodes.sh --on $r -- "$PY" "$OUT/allgather.py" & done; wait')
  # The simulator's link: B / bandwidth + latency for B = 6.6 MB.
  gbps=$(awk -v ar="$ar" -v lat="$lat" 'BEGIN {printf "%.4f", 6604456 / ((ar - lat) / 1000) / 1e9}')
  lat_us=$(awk -v lat="$lat" 'BEGIN {printf "%d", lat * 1000}')
  declare -A step=() bytes=()
  for c in "${configs[@]}"; do
    name="${c%%:*}"; flags="${c#*:}"
    # shellcheck disable=SC2086  # flags are several words
    [[ " ${CONFIGS:-$name} " == *" $name "* ]] || continue
    read -r step[$name] bytes[$name] < <(scripts/nodes.sh "${shape[@]}" -- bash "$OUT/run.sh" "$rate-$name" $flags)
  done
  for c in "${configs[@]}"; do
    name="${c%%:*}"; flags="${c#*:}"
    [[ $name == *no-overlap || -z ${step[$name]:-} ]] && continue
    base=no-overlap; wire=$ar
    [[ $name == bf16* ]] && base=bf16-no-overlap && wire=$ar16
    hidden=$(awk -v s="${step[$name]}" -v n="${step[$base]:-nan}" -v ar="$wire" 'BEGIN {printf "%.0f", 100 * (n - s) / ar}')
    sim="" sim_n=""
    if [[ $name != bf16* ]]; then
      # shellcheck disable=SC2086
      MGPU_SIM_LINK="$gbps,$lat_us" "$MGPU" bench --cpu-replicas 2 --steps "$STEPS" --warmup 2 \
        --batch-per-device "$BATCH" --threads 1 --model minigooglenet $flags \
        --out-dir "$OUT/sim-$rate-$name" > "$OUT/sim-$rate-$name.log" 2>&1
      read -r sim sim_n < <(grep -o 'step [0-9.]* ms overlapped, [0-9.]* ms' "$OUT/sim-$rate-$name.log" |
        awk '{print $2, $5}')
    fi
    echo "$rate,$name,$wire,$lat,${step[$name]},${step[$base]:-},$hidden,${bytes[$name]},$sim,$sim_n" >> "$OUT/link.csv"
    echo "| $rate | $flags | $wire | ${step[$name]} | ${step[$base]:--} | ${hidden}% | ${bytes[$name]} | ${sim:--} | ${sim_n:--} |"
  done
done
echo "table: $OUT/link.csv"
