#!/usr/bin/env python3
"""Checks `mgpu export` output from Python, as a user would load it (test_export.cpp runs it).

Usage: check_export.py EXPORTED.pt REFERENCE_DIR
REFERENCE_DIR holds what the C++ side knows, written without pickle: index.json, each tensor's
raw bytes, the input images and the C++ logits. Checks that torch.load (weights_only) gives a
dict of tensors with the same names, order, dtypes, shapes and bytes, the mean image and the
description; then, where python/mgpu_models.py has a port of the model, that the port loads the
dict strictly and gives the C++ logits. Exits 0 if all holds, 1 with the first difference.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from mgpu_models import PORTS, build  # noqa: E402

DTYPES = {"float32": torch.float32, "int64": torch.int64, "uint8": torch.uint8}


def raw(ref_dir, entry):
    with open(os.path.join(ref_dir, entry["file"]), "rb") as f:
        data = bytearray(f.read())
    return torch.frombuffer(data, dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])


def check(exported, ref_dir):
    index = json.load(open(os.path.join(ref_dir, "index.json")))
    stem = exported[:-3] if exported.endswith(".pt") else exported
    state = torch.load(exported)  # weights_only=True: plain tensors in a dict, nothing else
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"{exported} is not a dict of tensors: {type(state)}"
    names = [e["name"] for e in index["tensors"]]
    if list(state) != names:
        return f"names differ: {list(state)[:4]}... against {names[:4]}..."
    for entry in index["tensors"]:
        got, want = state[entry["name"]], raw(ref_dir, entry)
        if got.dtype != want.dtype or got.shape != want.shape or not torch.equal(got, want):
            return f"{entry['name']}: {got.dtype} {tuple(got.shape)} differs from the C++ tensor"
    mean = torch.load(stem + ".mean.pt")
    if not torch.equal(mean, raw(ref_dir, index["mean"])):
        return "the mean image differs"
    about = json.load(open(stem + ".json"))
    if about["model"] != index["model"] or about["input_shape"] != list(mean.shape):
        return f"the description is wrong: {about}"
    if index["model"] not in PORTS:
        print(f"{len(state)} tensors identical; no Python port of {index['model']} in "
              "python/mgpu_models.py, so no forward pass to compare")
        return None
    net = build(index["model"], about["input_shape"][0], len(about["classes"]))
    net.load_state_dict(state, strict=True)
    if list(net.state_dict()) != names:
        return "the port's state_dict has another order"
    images = raw(ref_dir, index["images"])
    with torch.no_grad():
        logits = net.eval()(images.float() - mean)
    want = raw(ref_dir, index["logits"])
    diff = (logits - want).abs().max().item()
    if not torch.allclose(logits, want, rtol=1e-4, atol=1e-4):
        return f"the port's logits differ from the C++ ones by up to {diff:.3g}"
    print(f"{len(state)} tensors identical; the port's forward pass matches the C++ one "
          f"(largest difference {diff:.3g})")
    return None


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    problem = check(sys.argv[1], sys.argv[2])
    if problem:
        print(f"check_export: {problem}", file=sys.stderr)
        sys.exit(1)
