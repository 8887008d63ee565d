#!/usr/bin/env python3
"""Trains the PyTorch port of a model (python/mgpu_models.py) as mgpu's trainer does, from the
same initial weights on the same batches, and compares the result with mgpu's (test_fidelity.cpp
runs it).

Usage: check_steps.py DIR
DIR holds initial.pt and final.pt (`mgpu export` state_dicts), initial.mean.pt, images.bin
(uint8 [N, C, H, W]), labels.bin (int64 [N]) and steps.json (lr, momentum, power, epochs,
shape, classes). Every epoch is one full-batch step, the images in their stored order, with
the tutorial's per-epoch rate lr * (1 - e / epochs)^power, SGD with momentum, cross-entropy,
the mean image subtracted, no augmentation or dropout. Exits 0 if every tensor (parameters and
batch-norm statistics) agrees to 1e-5 relative to 1 + its size and the steps moved the
weights, 1 naming the largest differences otherwise.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from mgpu_models import MiniGoogLeNet, load_step_dir  # noqa: E402


def main(d):
    torch.set_num_threads(1)
    cfg, images, labels, mean, initial = load_step_dir(d)
    model = MiniGoogLeNet(cfg["shape"][1], cfg["classes"], dropout=0.0)
    model.load_state_dict(initial, strict=True)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"])
    x = images.float() - mean
    for epoch in range(int(cfg["epochs"])):
        for group in opt.param_groups:
            group["lr"] = cfg["lr"] * (1 - epoch / cfg["epochs"]) ** cfg["power"]
        opt.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        opt.step()
    final = torch.load(os.path.join(d, "final.pt"))
    diffs = []
    for key, theirs in model.state_dict().items():
        ours = final[key]
        diffs.append((((ours.double() - theirs.double()).abs() / (1 + theirs.double().abs())).max().item(), key))
    diffs.sort(reverse=True)
    worst, name = diffs[0]
    if worst >= 1e-5:
        print("largest differences:", ", ".join(f"{k} {v:.3g}" for v, k in diffs[:6]))
    moved = max(((final[k].double() - v.double()).abs().max().item())
                for k, v in initial.items() if v.is_floating_point())
    print(f"largest difference {worst:.3g} in {name}; the steps changed the state by up to {moved:.3g}")
    return 0 if worst < 1e-5 and moved > 1e-2 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
