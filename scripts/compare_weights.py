#!/usr/bin/env python3
"""Compares two model.pt files written by `mgpu train`: every parameter and buffer.

Usage: compare_weights.py A/model.pt B/model.pt
Prints the largest absolute difference; exits 0 if all tensors are bit-identical, 1 if any
differs, 2 if the files cannot be read or do not hold the same tensors.
"""
import sys

import torch


def main(a_path, b_path):
    try:
        a = torch.jit.load(a_path, map_location="cpu").state_dict()
        b = torch.jit.load(b_path, map_location="cpu").state_dict()
    except Exception as e:  # a missing or damaged file: say which
        print(f"cannot read the weights: {e}", file=sys.stderr)
        return 2
    if a.keys() != b.keys():
        print(f"different tensors: {sorted(a.keys() ^ b.keys())[:5]}", file=sys.stderr)
        return 2
    worst, worst_name, differing = 0.0, "", 0
    for name in a:
        if not torch.equal(a[name], b[name]):
            differing += 1
            diff = (a[name].double() - b[name].double()).abs().max().item()
            if diff >= worst:
                worst, worst_name = diff, name
    print(f"{len(a)} tensors, {differing} differ; largest difference {worst:.3g} {worst_name}")
    return 1 if differing else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
