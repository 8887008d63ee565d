#!/usr/bin/env python3
"""The peer: mgpu's training step in PyTorch Python, timed like `mgpu bench --levels`.

The same model (python/mgpu_models.py), batch, optimizer and data placement as mgpu: synthetic
CIFAR-sized uint8 images on the device, each epoch's plan (shuffled indices, shifts, flips)
drawn on the CPU and copied there once, the mean subtraction and the augmentation done there by
tensor gathers. The levels add one switch each, as mgpu's do: fp32, channels-last, bf16
(autocast), fused-sgd (torch.optim.SGD(fused=True)); on a GPU, cuda-graphs is torch.compile's
mode="reduce-overhead". Modes: eager, and compile (torch.compile of the model).

With --mgpu PATH it also runs `PATH bench` with the same settings in this session and prints
the two side by side with their ratios: one command for both. --repeat N alternates N rounds
of both and keeps each configuration's best round, so that a shared machine's drifting speed
does not favour whichever runs first.

    python benchmarks/pytorch_reference.py --device cpu --threads 2 --mgpu build/mgpu
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from mgpu_models import PORTS, build  # noqa: E402

LEVELS = ["fp32", "channels-last", "bf16", "fused-sgd", "cuda-graphs"]
TRAIN_IMAGES = 50000  # a CIFAR-10 epoch, for the projected s/epoch


def shift_and_flip(batch, dx, dy, flip):
    """mgpu's data::shift_and_flip: shifts with edge fill, then mirrors, by two gathers."""
    b, c, h, w = batch.shape
    rows = torch.arange(h, device=batch.device).view(1, h)
    cols = torch.arange(w, device=batch.device).view(1, w)
    src_rows = (rows - dy.view(b, 1)).clamp(0, h - 1)
    src_cols = (torch.where(flip.view(b, 1), w - 1 - cols, cols) - dx.view(b, 1)).clamp(0, w - 1)
    out = batch.gather(2, src_rows.view(b, 1, h, 1).expand(b, c, h, w))
    return out.gather(3, src_cols.view(b, 1, 1, w).expand(b, c, h, w))


def epoch_plan(n_images, steps, batch, generator):
    """[steps * batch, 4] int64: image index, dx, dy, flip (shifts up to 10% of 32 pixels)."""
    n = steps * batch
    order = torch.cat([torch.randperm(n_images, generator=generator)
                       for _ in range((n + n_images - 1) // n_images)])[:n]
    dx = ((torch.rand(n, generator=generator) * 2 - 1) * 3.2).round().long()
    dy = ((torch.rand(n, generator=generator) * 2 - 1) * 3.2).round().long()
    flip = (torch.rand(n, generator=generator) < 0.5).long()
    return torch.stack([order, dx, dy, flip], 1)


def time_level(args, level, mode, device, images, labels, mean):
    rank = LEVELS.index(level)
    channels_last, bf16, fused, graphs = rank >= 1, rank >= 2, rank >= 3, rank >= 4
    torch.manual_seed(args.seed)
    net = build(args.model, 3, 10).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=5e-3, momentum=0.9,
                          **({"fused": True} if fused else {"foreach": False}))
    model = net
    if mode == "compile":
        model = torch.compile(net, mode="reduce-overhead" if graphs else None)
    elif graphs:
        return None  # eager Python has no whole-step graph here; compile's is the peer
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)

    def step(rows):
        idx = rows[:, 0]
        x = shift_and_flip(images.index_select(0, idx).float() - mean,
                           rows[:, 1], rows[:, 2], rows[:, 3].bool())
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels.index_select(0, idx)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        loss_sum.add_(loss.detach().float())
        correct.add_(logits.detach().argmax(1).eq(y).sum())

    def run(steps):
        rows = epoch_plan(images.shape[0], steps, args.batch, gen).to(device)
        for s in range(steps):
            step(rows[s * args.batch:(s + 1) * args.batch])
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    gen = torch.Generator().manual_seed(args.seed)
    net.train()
    run(args.warmup)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    run(args.steps)
    seconds = time.perf_counter() - start
    ips = args.steps * args.batch / seconds
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else -1
    return {"ms_per_step": 1000 * seconds / args.steps, "images_per_second": ips,
            "seconds_per_epoch": TRAIN_IMAGES / ips, "peak_memory_mib": peak}


def run_mgpu(args, levels):
    """`mgpu bench` with the same settings; its bench.csv rows by level."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [args.mgpu, "bench", "--model", args.model, "--levels", ",".join(levels),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads",
               str(args.threads), "--batch-per-device", str(args.batch), "--out-dir", out]
        cmd += ["--gpus", "1"] if args.device == "cuda" else ["--cpu-replicas", "1"]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        with open(os.path.join(out, "bench.csv")) as f:
            return {row["level"]: row for row in csv.DictReader(f)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"],
                   default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="minigooglenet", choices=sorted(PORTS),
                   help="a model with a PyTorch port in python/mgpu_models.py")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--levels", default="all", help="all, or a comma-separated choice of "
                   + ", ".join(LEVELS) + " (cuda-graphs needs --device cuda)")
    p.add_argument("--modes", default="eager,compile", help="eager and/or compile")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", type=int, default=1, help="rounds; the best of each is kept")
    p.add_argument("--mgpu", help="path of the mgpu binary: run its bench too, side by side")
    p.add_argument("--csv", help="write the PyTorch rows here, each as soon as it is measured")
    p.add_argument("--budget", type=float, default=0,
                   help="seconds: start no PyTorch configuration after this many (0: no limit); "
                        "what was measured by then is written and compared")
    args = p.parse_args()

    levels = [l for l in LEVELS if args.device == "cuda" or l != "cuda-graphs"] \
        if args.levels == "all" else args.levels.split(",")
    for l in levels:
        if l not in LEVELS or (l == "cuda-graphs" and args.device != "cuda"):
            p.error(f"--levels: '{l}' is not one of {', '.join(LEVELS)} on {args.device}")
    modes = args.modes.split(",")
    for m in modes:
        if m not in ("eager", "compile"):
            p.error(f"--modes: '{m}' is not eager or compile")
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    args.threads = threads
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    gen = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (4096, 3, 32, 32), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (4096,), generator=gen)
    mean = images.float().mean(0).to(device)
    images, labels = images.to(device), labels.to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"PyTorch {torch.__version__} reference: {args.model}, batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup}; device {name}, {threads} threads")
    started = time.perf_counter()
    best, mgpu = {}, {}  # (mode, level) -> fastest PyTorch row; level -> fastest mgpu row
    out = None
    if args.csv:  # each row is written as soon as it is measured: a timeout loses nothing
        out = open(args.csv, "w", newline="")
        fields = ["ms_per_step", "images_per_second", "seconds_per_epoch", "peak_memory_mib",
                  "level", "mode", "round"]
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        out.flush()
    for round_ in range(1, args.repeat + 1):
        if args.repeat > 1:
            print(f"round {round_} of {args.repeat}", flush=True)
        if args.mgpu:
            for level, row in run_mgpu(args, levels).items():
                if level not in mgpu or float(row["images_per_second"]) > float(
                        mgpu[level]["images_per_second"]):
                    mgpu[level] = row
        for mode in modes:
            for level in levels:
                if args.budget and time.perf_counter() - started > args.budget:
                    print(f"  pytorch {mode:<7} {level:<14} not run: the {args.budget:g} s "
                          "budget is spent", flush=True)
                    continue
                r = time_level(args, level, mode, device, images, labels, mean)
                if r is None:
                    continue
                r.update(level=level, mode=mode, round=round_)
                ours = mgpu.get(level)
                ratio = (f"  mgpu {float(ours['images_per_second']):9.1f} images/s, "
                         f"{float(ours['images_per_second']) / r['images_per_second']:.2f}x"
                         if ours else "")
                print(f"  pytorch {mode:<7} {level:<14} {r['ms_per_step']:9.2f} ms/step "
                      f"{r['images_per_second']:9.1f} images/s {r['seconds_per_epoch']:8.2f} "
                      "s/epoch" + (f" {r['peak_memory_mib']:8.0f} MiB"
                                   if r["peak_memory_mib"] >= 0 else "") + ratio, flush=True)
                if out:
                    writer.writerow(r)
                    out.flush()
                key = (mode, level)
                if key not in best or r["images_per_second"] > best[key]["images_per_second"]:
                    best[key] = r
    if out:
        out.close()
    rows = list(best.values())
    if not mgpu or not rows:
        return

    def peer(mode, level):
        found = [r for r in rows if r["mode"] == mode and r["level"] == level]
        return found[0]["images_per_second"] if found else None

    print(f"\nimages/s, same machine, same session, best of {args.repeat} round(s) "
          "(ratio: mgpu over PyTorch)")
    print(f"{'level':<14} {'mgpu':>9} {'eager':>9} {'ratio':>7} {'compile':>9} {'ratio':>7}")
    for level in levels:
        ours = float(mgpu[level]["images_per_second"])
        cells = [f"{level:<14} {ours:9.1f}"]
        for mode in ("eager", "compile"):
            theirs = peer(mode, level)
            cells.append(f"{theirs:9.1f} {ours / theirs:6.2f}x" if theirs else f"{'-':>9} {'-':>7}")
        print(" ".join(cells))
    best = max(levels, key=lambda l: float(mgpu[l]["images_per_second"]))
    ours = float(mgpu[best]["images_per_second"])
    for mode in modes:
        theirs = max((r for r in rows if r["mode"] == mode), key=lambda r: r["images_per_second"])
        print(f"mgpu best ({best}, {ours:.1f} images/s) over PyTorch {mode} best "
              f"({theirs['level']}, {theirs['images_per_second']:.1f}): "
              f"{ours / theirs['images_per_second']:.2f}x")
    base = peer("eager", levels[0])
    if base:
        print(f"mgpu best over PyTorch eager {levels[0]}: {ours / base:.2f}x")


if __name__ == "__main__":
    main()
