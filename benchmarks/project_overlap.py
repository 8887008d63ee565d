#!/usr/bin/env python3
"""The N-GPU projection of docs/benchmarks.md, with the overlap of the all-reduce and the backward
pass modelled as a timeline, beside the old model (one all-reduce after the backward pass).

Inputs, measured: the single-GPU step S (ms), and a timeline CSV of `mgpu bench` with several
replicas (timeline-N.csv: per bucket its bytes and when it was started, relative to the backward
pass). Assumptions (stated in docs/benchmarks.md): the backward pass is a share B of the step and
ends where the step's compute ends (the optimizer's few kernels are left out); a bucket becomes
ready at the same fraction of the backward pass as in the measured timeline; each bucket's ring
all-reduce takes bytes * 2(N-1)/N / busbw + latency, one bucket at a time in order; the step
ends when the backward pass and the last bucket have both ended.

Usage: project_overlap.py --step-ms 8.83 --backward-share 0.6 TIMELINE.csv [TIMELINE.csv ...]"""
import argparse
import csv
import os

LINKS = [("NVLink 4 + NVSwitch", 460.0), ("PCIe Gen5", 35.0), ("PCIe at a quarter", 8.75)]
LATENCY_MS = 0.020


def buckets(path):
    """[(bytes, ready fraction of the backward pass)] of the overlapped step, in start order."""
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r["mode"] == "overlap"]
    end = float(rows[0]["backward_end_ms"])
    return [(int(r["bytes"]), min(1.0, float(r["started_ms"]) / end)) for r in rows]


def step_ms(step, backward_share, parts, gpus, busbw, overlap):
    forward = step * (1 - backward_share)
    backward = step * backward_share
    total = sum(b for b, _ in parts)
    per_byte = 2 * (gpus - 1) / gpus / (busbw * 1e9) * 1e3  # ms per byte
    if not overlap:
        return step + total * per_byte + LATENCY_MS
    link_free = 0.0
    for size, ready in parts:
        link_free = max(forward + ready * backward, link_free) + size * per_byte + LATENCY_MS
    return max(step, link_free)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--step-ms", type=float, required=True)
    p.add_argument("--backward-share", type=float, default=0.6)
    p.add_argument("timelines", nargs="+")
    a = p.parse_args()
    for path in a.timelines:
        if not os.path.isfile(path):
            p.error(f"{path}: no such timeline (mgpu bench writes timeline-N.csv)")
    print(f"step {a.step_ms} ms, backward {a.backward_share:.0%} of it, {LATENCY_MS * 1e3:.0f} us "
          "per all-reduce; efficiency = step / projected step")
    print("| buckets | interconnect (busbw) | 2 GPUs | 4 GPUs | 8 GPUs |")
    print("| --- | --- | --- | --- | --- |")
    for i, path in enumerate(a.timelines):
        parts = buckets(path)
        sizes = "+".join(f"{b / 1e6:.1f}" for b, _ in parts)
        for overlap in ((False, True) if i == 0 else (True,)):
            for name, busbw in LINKS:
                cells = []
                for n in (2, 4, 8):
                    t = step_ms(a.step_ms, a.backward_share, parts, n, busbw, overlap)
                    cells.append(f"{t:.2f} ms, {a.step_ms / t:.1%}")
                label = f"{sizes} MB, overlapped" if overlap else "one after backward"
                print(f"| {label} | {name} ({busbw:g} GB/s) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
