#!/usr/bin/env python3
"""Does mgpu learn as the tutorial's Keras does? Both, several seeds each, on the same data.

Runs `mgpu train` (on the CPU) and benchmarks/keras_reference.py with seeds 1..S on the same
CIFAR-10 files, limits, epochs and threads, alternating the two so that a machine's drifting
speed favours neither. Then prints, for every epoch, the mean and the spread (sample standard
deviation, and min..max) over the seeds of loss, acc, val_loss and val_acc for each, and whether
mgpu's mean lies inside the range of Keras's seeds; the training images per second of both;
and draws the two families of curves in one PNG (gnuplot, as `mgpu plot` does).

Runs whose history.csv already exists under --out-dir are not run again, so an interrupted
comparison continues where it stopped, and more seeds can be added later.

    python3 benchmarks/compare_learning.py --mgpu build/mgpu --data-dir /tmp/cifar \
        --limit-train 5120 --limit-test 1000 --epochs 8 --seeds 3 --threads 2 \
        --out-dir runs/compare
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
METRICS = ["loss", "acc", "val_loss", "val_acc"]


def run_command(family, args, seed, out):
    common = ["--data-dir", args.data_dir, "--epochs", str(args.epochs),
              "--limit-train", str(args.limit_train), "--limit-test", str(args.limit_test),
              "--seed", str(seed), "--threads", str(args.threads), "--out-dir", out]
    if family == "mgpu":
        return [args.mgpu, "train", "--gpus", "0", "--dataset", "cifar10", "--no-download",
                "--verbose", "2"] + common + args.mgpu_flags.split()
    return [sys.executable, os.path.join(HERE, "keras_reference.py")] + common


def read_history(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(m not in rows[0] for m in METRICS):
        sys.exit(f"{path}: expected a history.csv with the columns epoch, {', '.join(METRICS)}")
    return [{m: float(r[m]) for m in METRICS} for r in rows]


def spread(values):
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, sd, min(values), max(values)


def draw(png, out_dir, families, epochs):
    """Loss (left) and accuracy (right); solid mgpu, dashed Keras; thin lines each seed."""
    data = os.path.join(out_dir, "curves.dat")
    with open(data, "w") as f:
        for family, runs in families.items():
            for seed, history in runs.items():
                f.write(f"# {family} seed {seed}\n")
                for e, row in enumerate(history[:epochs], 1):
                    f.write(f"{e} " + " ".join(f"{row[m]:.6f}" for m in METRICS) + "\n")
                f.write("\n\n")
    blocks, index = [], 0
    colours = {"loss": "#1f77b4", "val_loss": "#ff7f0e", "acc": "#2ca02c", "val_acc": "#d62728"}
    for family, runs in families.items():
        for seed in runs:
            blocks.append((family, seed, index))
            index += 1

    def plots(columns):
        parts = []
        for family, seed, i in blocks:
            dash = 1 if family == "mgpu" else 2
            for m in columns:
                title = f"{family} {m}" if seed == min(families[family]) else ""
                parts.append(f"'{data}' index {i} using 1:{2 + METRICS.index(m)} with lines "
                             f"dt {dash} lw 1.5 lc rgb '{colours[m]}' title '{title}'")
        return ", ".join(parts)

    script = "\n".join([
        "set terminal pngcairo size 1400,560 noenhanced font 'sans,11'",
        f"set output '{png}'",
        "set multiplot layout 1,2",
        "set grid", "set xtics 1", "set xlabel 'epoch'", "set key outside bottom center horizontal",
        "set title 'loss: mgpu solid, Keras dashed, one line per seed'",
        "plot " + plots(["loss", "val_loss"]),
        "set title 'accuracy: mgpu solid, Keras dashed, one line per seed'",
        "set yrange [0:1]",
        "plot " + plots(["acc", "val_acc"]),
        "unset multiplot", ""])
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mgpu", default=os.path.join(HERE, "..", "build", "mgpu"))
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 binary files")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..S for each framework")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--limit-train", type=int, default=5120)
    parser.add_argument("--limit-test", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mgpu-flags", default="",
                        help="more flags for mgpu train, e.g. '--channels-last --fused-sgd'")
    parser.add_argument("--png", help="default OUT_DIR/compare.png")
    args = parser.parse_args()
    if args.seeds < 2:
        sys.exit("--seeds: expected at least 2 (a spread needs two runs)")
    os.makedirs(args.out_dir, exist_ok=True)

    families = {"mgpu": {}, "keras": {}}
    speed = {"mgpu": [], "keras": []}
    for seed in range(1, args.seeds + 1):
        for family in families:
            out = os.path.join(args.out_dir, f"{family}-s{seed}")
            history = os.path.join(out, "history.csv")
            if not os.path.exists(history):
                command = run_command(family, args, seed, out)
                print("==", " ".join(command), flush=True)
                with open(os.path.join(args.out_dir, f"{family}-s{seed}.log"), "w") as log:
                    done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
                if done.returncode != 0:
                    sys.exit(f"{family} seed {seed} failed (exit {done.returncode}); "
                             f"see {args.out_dir}/{family}-s{seed}.log")
            families[family][seed] = read_history(history)
            with open(os.path.join(out, "summary.json")) as f:
                speed[family].append(json.load(f)["train_images_per_second"])
            if len(families[family][seed]) < args.epochs:
                sys.exit(f"{history}: {len(families[family][seed])} epochs, expected "
                         f"{args.epochs} (remove {out} to run it again)")

    print(f"\n{args.seeds} seeds each, {args.limit_train} training and {args.limit_test} test "
          f"images, {args.epochs} epochs, batch 64, {args.threads} threads; "
          "mean +- sample standard deviation [min..max] over the seeds")
    within = {m: 0 for m in METRICS}
    for m in METRICS:
        print(f"\n{m:>8}  {'mgpu':^34}  {'keras':^34}  mgpu mean within keras range")
        for e in range(args.epochs):
            cells, stats = [], {}
            for family, runs in families.items():
                stats[family] = spread([h[e][m] for h in runs.values()])
                mean, sd, lo, hi = stats[family]
                cells.append(f"{mean:.4f} +- {sd:.4f} [{lo:.4f}..{hi:.4f}]")
            inside = stats["keras"][2] <= stats["mgpu"][0] <= stats["keras"][3]
            within[m] += inside
            print(f"{e + 1:>8}  {cells[0]:^34}  {cells[1]:^34}  {'yes' if inside else 'no'}")
    print()
    for family, values in speed.items():
        mean, sd, lo, hi = spread(values)
        print(f"{family:>6}: {mean:.1f} training images/s (+- {sd:.1f}, {lo:.1f}..{hi:.1f})")
    print(f"mgpu / keras: {statistics.fmean(speed['mgpu']) / statistics.fmean(speed['keras']):.2f}x")
    for m in METRICS:
        print(f"{m}: mgpu's mean inside Keras's seed range in {within[m]} of {args.epochs} epochs")
    print(f"\nlast epoch, mgpu mean - keras mean +- its standard error "
          f"(sqrt(sd_mgpu^2 / {args.seeds} + sd_keras^2 / {args.seeds})):")
    for m in METRICS:
        (a, sa, _, _), (b, sb, _, _) = (spread([h[-1][m] for h in families[f].values()])
                                        for f in ("mgpu", "keras"))
        error = (sa ** 2 / args.seeds + sb ** 2 / args.seeds) ** 0.5
        print(f"{m:>8}: {a - b:+.4f} +- {error:.4f}"
              f" ({abs(a - b) / error if error else float('inf'):.1f} standard errors)")
    png = args.png or os.path.join(args.out_dir, "compare.png")
    draw(png, args.out_dir, families, args.epochs)
    print(f"curves: {png}")


if __name__ == "__main__":
    main()
