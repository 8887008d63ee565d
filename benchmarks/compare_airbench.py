#!/usr/bin/env python3
"""airbench94 in mgpu beside its Python peer (benchmarks/airbench_reference.py), on the same
CIFAR-10 files, threads and precision: final test accuracy (with the recipe's test-time
augmentation), wall time and training images/s of each run, their means, and a picture of test
accuracy against wall time (gnuplot), optionally with other mgpu runs (e.g. MiniGoogLeNet's
history.csv on the same machine) beside them.

Runs alternate between the two sides, seed by seed, so that a machine's drifting speed favours
neither; a run whose result already exists under --out-dir is not run again.

    python3 benchmarks/compare_airbench.py --mgpu build/mgpu --data-dir /tmp/cifar \\
        --threads 2 --seeds 1 --out-dir runs/airbench [--epochs 9.9] \\
        [--also "MiniGoogLeNet=runs/minigooglenet-cpu"]
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_mgpu(args, seed, out):
    summary = os.path.join(out, "summary.json")
    if not os.path.exists(summary):
        cmd = [args.mgpu, "train", "--model", "airbench94", "--dataset", "cifar10", "--data-dir",
               args.data_dir, "--gpus", "0", "--threads", str(args.threads), "--seed", str(seed),
               "--epochs", str(args.epochs), "--verbose", "2", "--out-dir", out]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    s = json.load(open(summary))
    rows = list(csv.DictReader(open(os.path.join(out, "history.csv"))))
    return dict(acc=s["final"]["val_acc"], seconds=s["seconds"],
                images_per_second=s["train_images_per_second"],
                curve=[(float(r["seconds"]), float(r["val_acc"])) for r in rows])


def run_peer(args, seed, out):
    result = os.path.join(out, "result.json")
    if not os.path.exists(result):
        os.makedirs(out, exist_ok=True)
        cmd = [sys.executable, os.path.join(HERE, "airbench_reference.py"), "train", "--data-dir",
               args.data_dir, "--device", "cpu", "--threads", str(args.threads), "--seed", str(seed),
               "--epochs", str(args.epochs), "--json", result]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    r = json.load(open(result))
    return dict(acc=r["final_val_acc"], seconds=r["seconds"],
                images_per_second=r["train_images_per_second"],
                curve=[(h["seconds"], h["val_acc"]) for h in r["history"]])


def cumulative(curve):
    total, points = 0.0, []
    for seconds, acc in curve:
        total += seconds
        points.append((total, acc))
    return points


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mgpu", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--epochs", type=float, default=9.9)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--also", action="append", default=[], help="LABEL=RUN_DIR of another mgpu run")
    args = p.parse_args()
    runs = {"mgpu": [], "peer": []}
    for seed in range(1, args.seeds + 1):
        runs["mgpu"].append(run_mgpu(args, seed, os.path.join(args.out_dir, f"mgpu-{seed}")))
        runs["peer"].append(run_peer(args, seed, os.path.join(args.out_dir, f"peer-{seed}")))
    print(f"\nairbench94, {args.epochs} epochs, {args.threads} threads, CPU, bfloat16 autocast")
    print(f"{'side':<6} {'seed':>4} {'test acc (TTA)':>15} {'wall s':>9} {'train images/s':>15}")
    for side, results in runs.items():
        for seed, r in enumerate(results, 1):
            print(f"{side:<6} {seed:>4} {r['acc']:>15.4f} {r['seconds']:>9.1f} {r['images_per_second']:>15.1f}")
    for side, results in runs.items():
        accs = [r["acc"] for r in results]
        secs = [r["seconds"] for r in results]
        spread = f" (sd {statistics.stdev(accs):.4f})" if len(accs) > 1 else ""
        print(f"{side:<6} mean {statistics.mean(accs):.4f}{spread}, {statistics.mean(secs):.1f} s")
    gap = statistics.mean(r["acc"] for r in runs["mgpu"]) - statistics.mean(r["acc"] for r in runs["peer"])
    ratio = statistics.mean(r["seconds"] for r in runs["peer"]) / statistics.mean(r["seconds"] for r in runs["mgpu"])
    print(f"mgpu - peer accuracy: {100 * gap:+.2f} points; peer / mgpu wall time: {ratio:.2f}x")

    # Test accuracy against the wall time of the epochs (training and validation).
    series = [(f"mgpu airbench94 seed {i}", cumulative(r["curve"])) for i, r in enumerate(runs["mgpu"], 1)]
    series += [(f"PyTorch peer seed {i}", cumulative(r["curve"])) for i, r in enumerate(runs["peer"], 1)]
    for item in args.also:
        label, run_dir = item.split("=", 1)
        rows = list(csv.DictReader(open(os.path.join(run_dir, "history.csv"))))
        series.append((label, cumulative([(float(r["seconds"]), float(r["val_acc"])) for r in rows])))
    data = os.path.join(args.out_dir, "accuracy-vs-time.dat")
    with open(data, "w") as f:
        for label, points in series:
            f.write(f"# {label}\n0 0\n" + "".join(f"{t / 60:.3f} {a:.4f}\n" for t, a in points) + "\n\n")
    png = os.path.join(args.out_dir, "accuracy-vs-time.png")
    quoted = lambda text: "'" + text.replace("'", "''") + "'"  # gnuplot's single quotes
    plots = ", ".join(f"{quoted(data)} index {i} with linespoints title {quoted(label)}"
                      for i, (label, _) in enumerate(series))
    script = (f"set terminal pngcairo size 900,560; set output '{png}'; set grid; "
              f"set xlabel 'wall time (minutes, {args.threads} CPU threads)'; set ylabel 'test accuracy'; "
              f"set key bottom right; set yrange [0:1]; plot {plots}")
    subprocess.run(["gnuplot", "-e", script], check=True)
    print(f"picture: {png}")


if __name__ == "__main__":
    main()
