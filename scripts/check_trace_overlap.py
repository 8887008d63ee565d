#!/usr/bin/env python3
"""Reads a profiler trace (Chrome JSON, `mgpu bench --trace`) and says how many of NCCL's kernels
ran while another kernel ran on another stream: with the overlapped all-reduce, the buckets'
kernels run beside the backward pass's (the optimizer waits for every bucket, so a kernel beside
an all-reduce is a backward kernel). Exits 1 when the trace has no NCCL kernel or none overlaps.

Usage: check_trace_overlap.py TRACE.json"""
import json
import sys


def main(path):
    with open(path) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    kernels = [e for e in events if e.get("cat") == "kernel" and "dur" in e]
    nccl = [k for k in kernels if "nccl" in k.get("name", "").lower()]
    others = [k for k in kernels if "nccl" not in k.get("name", "").lower()]
    print(f"{path}: {len(kernels)} kernels, {len(nccl)} of them NCCL's")
    if not nccl:
        print("no NCCL kernel in the trace (a one-rank group may move nothing in place)")
        return 1
    overlapping = 0
    for k in nccl:
        start, end, stream = k["ts"], k["ts"] + k["dur"], k.get("args", {}).get("stream")
        if any(o.get("args", {}).get("stream") != stream and o["ts"] < end and
               o["ts"] + o["dur"] > start for o in others):
            overlapping += 1
    print(f"{overlapping} of {len(nccl)} NCCL kernels ran while a kernel of another stream ran")
    return 0 if overlapping else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
