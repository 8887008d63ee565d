#!/usr/bin/env python3
"""Reads a run's TensorBoard log with TensorBoard's own reader (event_accumulator, PyPI's
tensorboard) and checks it against the run's history.csv (test_tensorboard.cpp runs it).

Usage: check_tensorboard.py RUN EVERY STEPS [SEEN]
RUN is an mgpu train --out-dir; EVERY its --tensorboard-every; STEPS the run's total steps;
SEEN, for a resumed run, a copy of RUN/tensorboard/train as it was before the resume: a
TensorBoard that had read it and then reads the folder as the resume left it must show the same
steps, each once, as one that reads it afresh.
Checks: one event file per part of the run in RUN/tensorboard/train and /validation (two with
SEEN); TensorBoard reading the folder shows every epoch's loss, acc, lr
and seconds (train) and loss, acc (validation) equal to history.csv's, at steps 1..E once each,
images/s for every epoch; batch_loss and batch_lr at steps EVERY, 2 EVERY, ... <= STEPS, once
each, the rates never rising within an epoch's schedule; the settings as text. Then a copy of the
newest train file cut 3 bytes short still reads, up to its last whole record. Exits 0 and prints
"tensorboard: ok", else 1 naming what differs.
"""
import csv
import os
import shutil
import sys
import tempfile

from tensorboard.backend.event_processing import event_accumulator

ALL = {event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0}


def fail(msg):
    print("tensorboard: " + msg)
    sys.exit(1)


def load(folder, parts):
    files = sorted(f for f in os.listdir(folder) if "tfevents" in f)
    if len(files) != parts:
        fail(f"{folder}: expected {parts} event file(s), one a part of the run, found {files}")
    acc = event_accumulator.EventAccumulator(folder, size_guidance=ALL)
    acc.Reload()
    return acc, os.path.join(folder, files[-1])


def scalars(acc, tag):
    if tag not in acc.Tags()["scalars"]:
        fail(f"no scalar {tag}; the tags are {acc.Tags()['scalars']}")
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def close(a, b, places):
    return abs(a - b) <= 10 ** -places + 1e-6 * abs(b)  # csv's rounding, float32's


def main(run, every, steps, seen):
    with open(os.path.join(run, "history.csv")) as f:
        history = list(csv.DictReader(f))
    parts = 2 if seen else 1  # rank 0 wrote one file per part; rank 1 none
    train, train_file = load(os.path.join(run, "tensorboard", "train"), parts)
    validation, _ = load(os.path.join(run, "tensorboard", "validation"), parts)
    epochs = [int(row["epoch"]) for row in history]
    checks = [(train, "epoch_loss", "loss", 6), (train, "epoch_acc", "acc", 6),
              (train, "epoch_lr", "lr", 8), (train, "epoch_seconds", "seconds", 3),
              (validation, "epoch_loss", "val_loss", 6), (validation, "epoch_acc", "val_acc", 6)]
    for acc, tag, column, places in checks:
        got = scalars(acc, tag)
        if [s for s, _ in got] != epochs:
            fail(f"{tag}: steps {[s for s, _ in got]}, history.csv's epochs {epochs}")
        for (step, value), row in zip(got, history):
            if not close(value, float(row[column]), places):
                fail(f"{tag} at epoch {step}: {value}, history.csv's {column} {row[column]}")
    ips = scalars(train, "epoch_images_per_second")
    if [s for s, _ in ips] != epochs or min(v for _, v in ips) <= 0:
        fail(f"epoch_images_per_second: {ips}")
    want = list(range(every, steps + 1, every))
    for tag in ("batch_loss", "batch_lr"):
        got = [s for s, _ in scalars(train, tag)]
        if got != want:
            fail(f"{tag}: steps {got}, expected {want} (each once)")
    losses = [v for _, v in scalars(train, "batch_loss")]
    if not all(0 < v < 100 for v in losses):
        fail(f"batch_loss values {losses}")
    rates = [v for _, v in scalars(train, "batch_lr")]
    if any(b > a * (1 + 1e-6) for a, b in zip(rates, rates[1:])):
        fail(f"batch_lr rose: {rates}")
    if "config" not in train.Tags()["tensors"]:
        fail(f"no config text; tensors {train.Tags()['tensors']}")
    text = train.Tensors("config")[0].tensor_proto.string_val[0].decode()
    if "| model |" not in text or "config.lr" not in text:
        fail(f"config text: {text}")

    # A copy cut 3 bytes short, as a kill mid-write leaves it: every whole record still reads.
    count = sum(len(train.Scalars(t)) for t in train.Tags()["scalars"])
    with tempfile.TemporaryDirectory() as tmp:
        cut = os.path.join(tmp, os.path.basename(train_file))
        shutil.copyfile(train_file, cut)
        os.truncate(cut, os.path.getsize(cut) - 3)
        acc = event_accumulator.EventAccumulator(tmp, size_guidance=ALL)
        acc.Reload()
        cut_count = sum(len(acc.Scalars(t)) for t in acc.Tags()["scalars"])
        if cut_count != count - 1:
            fail(f"the file cut short read {cut_count} scalars, expected {count - 1}")
    if seen:
        watched(seen, train_file, want, epochs)
    print(f"tensorboard: ok ({count} scalars, {len(epochs)} epochs, {len(want)} logged steps)")


def watched(seen, train_file, want, epochs):
    """A TensorBoard that read the killed part's files, then the resumed part's."""
    with tempfile.TemporaryDirectory() as live:
        for f in os.listdir(seen):
            shutil.copy(os.path.join(seen, f), live)
        acc = event_accumulator.EventAccumulator(live, size_guidance=ALL)
        acc.Reload()
        shutil.copy(train_file, live)  # the resumed part's file, beside the killed part's
        acc.Reload()
        got = [e.step for e in acc.Scalars("batch_loss")]
        if got != want:
            fail(f"a TensorBoard that watched the resume shows batch_loss at {got}, expected {want}")
        got = [e.step for e in acc.Scalars("epoch_loss")]
        if got != epochs:
            fail(f"a TensorBoard that watched the resume shows epoch_loss at {got}, expected {epochs}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "")
