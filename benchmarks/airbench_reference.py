#!/usr/bin/env python3
"""airbench94's recipe in plain PyTorch, the peer `mgpu train --model airbench94` is compared
with (docs/benchmarks.md, "airbench94"). Written from the recipe mgpu's registry gives the model
(models/Models.def) and from airbench94 itself (KellerJordan/cifar10-airbench,
legacy/airbench94.py), with mgpu's data path: the same CIFAR-10 binary files, the per-pixel mean
image subtracted (airbench divides by the channels' std as well; the whitening layer makes that
immaterial, docs/extending.md), bfloat16 autocast on the CPU (float16 weights on a GPU as
airbench; --precision to choose), channels-last.

    airbench_reference.py train --data-dir DIR [--epochs 9.9] [--device cpu|cuda] [--threads 2]
        trains once and prints one line per epoch, then the final test accuracy with test-time
        augmentation, the wall time and images/s, and writes them to --json if given.
    airbench_reference.py steps DIR
        the step-equivalence check (tests/test_airbench94.cpp): from DIR's initial.pt (mgpu's
        weights after its whitening initialisation), images.bin, labels.bin, initial.mean.pt and
        steps.json, checks that this script's whitening filters are mgpu's and that its steps
        (no augmentation, the images in order) end on final.pt bit for bit. Exits 0 if they do.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from mgpu_models import Airbench94, load_step_dir, whitening_filters  # noqa: E402

# The recipe (models/Models.def), in torch.optim.SGD's terms: airbench's lr 11.5 and weight decay
# 0.0153 per 1024 images, decoupled from momentum 0.85, are lr 11.5 / (1024 (1 + 1 / 0.15)) and
# weight decay 0.0153 x 1024 / 11.5 per unit of rate; batch-norm shifts 64 x the rate with 1/64
# of the decay; the whitening bias trained for 3 epochs; Nesterov; label smoothing 0.2 on a
# summed loss; the rate interpolated per step through 0:0.2, 0.23:1, 1:0.07; lookahead every 5
# steps; shifts of up to 2 pixels with reflected borders, alternating flips; batch 1024, 9.9
# epochs; validation with mirror and one-pixel translations.
EPOCHS = 9.9
BATCH = 1024
LR = 0.00146484375
MOMENTUM = 0.85
WEIGHT_DECAY = 1.3623652173913041
GROUPS = [("norm", 64.0, 0.021286956521739127, -1), ("whiten.bias", 1.0, -1.0, 3)]
KNOTS = [(0.0, 0.2), (0.23, 1.0), (1.0, 0.07)]
LABEL_SMOOTHING = 0.2
LOOKAHEAD, LOOKAHEAD_DECAY = 5, 0.95
TRANSLATE = 2
INIT_IMAGES = 5000
EVAL_BATCH = 256


def read_cifar(data_dir):
    """The official binary files: train [50000, 3, 32, 32] uint8 and labels, then test."""
    folder = os.path.join(data_dir, "cifar-10-batches-bin")
    if not os.path.isdir(folder):
        folder = data_dir

    def read(names):
        raw = np.concatenate([np.fromfile(os.path.join(folder, n), dtype=np.uint8) for n in names])
        records = raw.reshape(-1, 3073)
        return (torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy()),
                torch.from_numpy(records[:, 0].astype(np.int64)))

    return read([f"data_batch_{i}.bin" for i in range(1, 6)]), read(["test_batch.bin"])


def mean_image(images):
    """mgpu's: summed in float64 in chunks of 4096, divided, then float32."""
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    for start in range(0, len(images), 4096):
        total += images[start:start + 4096].double().sum(0)
    return (total / len(images)).float()


def interpolate(knots, t):
    """mgpu's LrSchedule interpolate (numpy.interp), in the same order of operations."""
    if t <= knots[0][0]:
        return knots[0][1]
    for (x0, y0), (x1, y1) in zip(knots, knots[1:]):
        if t <= x1:
            return y1 if x1 == x0 else y0 + (y1 - y0) * (t - x0) / (x1 - x0)
    return knots[-1][1]


def shift_and_flip(batch, dx, dy, flip):
    """mgpu's augmentation gathers (data/Augment.cpp), reflected borders."""
    B, C, H, W = batch.shape
    rows = torch.arange(H, device=batch.device).view(1, H)
    cols = torch.arange(W, device=batch.device).view(1, W)

    def inside(i, n):
        return ((n - 1) - ((n - 1) - i.abs()).abs()).clamp(0, n - 1)

    src_rows = inside(rows - dy.view(B, 1), H)
    src_cols = inside(torch.where(flip.view(B, 1), W - 1 - cols, cols) - dx.view(B, 1), W)
    out = batch.gather(2, src_rows.view(B, 1, H, 1).expand(B, C, H, W))
    return out.gather(3, src_cols.view(B, 1, 1, W).expand(B, C, H, W))


class Recipe:
    """The model, its optimizer groups, lookahead, and one training step, as mgpu runs them."""

    def __init__(self, model, epochs, steps_per_epoch, channels_last=True, autocast=torch.bfloat16,
                 device="cpu", compile=False):
        self.model, self.device, self.autocast = model, device, autocast
        self.net = torch.compile(model) if compile else model  # the forward pass to run
        self.channels_last = channels_last
        self.epochs, self.full_steps = epochs, steps_per_epoch
        self.total_steps = math.ceil(steps_per_epoch * epochs)
        named = list(model.named_parameters())
        members = [[] for _ in GROUPS]
        default = []
        for name, p in named:
            if not p.requires_grad:
                continue
            g = next((i for i, (pattern, *_) in enumerate(GROUPS) if pattern in name), -1)
            (members[g] if g >= 0 else default).append(p)
        groups = [dict(params=default, weight_decay=WEIGHT_DECAY, group=-1)]
        for i, (_, _, decay, _) in enumerate(GROUPS):
            if members[i]:
                groups.append(dict(params=members[i], weight_decay=decay if decay >= 0 else WEIGHT_DECAY,
                                   group=i))
        self.optimizer = torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM, nesterov=True)
        self.averaged = [p for _, p in named] + [b for b in model.buffers() if b.is_floating_point()]
        self.average = [t.detach().clone() for t in self.averaged]

    def set_rates(self, epoch, step):
        t = epoch + (step - 1) / self.full_steps
        rate = LR * 1.0 * interpolate(KNOTS, t / self.epochs)
        for group in self.optimizer.param_groups:
            g = group["group"]
            if g < 0:
                group["lr"] = rate
            else:
                _, scale, _, epochs = GROUPS[g]
                group["lr"] = rate * (0.0 if 0 <= epochs <= epoch else scale)

    def step(self, x, labels, global_step):
        """One step on a batch (float [B, C, H, W], mean subtracted); returns the summed loss
        and the correct count."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device, dtype=self.autocast, enabled=self.autocast is not None):
            logits = self.net(x)
            loss = F.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING, reduction="sum")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.lookahead(global_step)
        return loss.detach(), (logits.detach().argmax(1) == labels).sum()

    @torch.no_grad()
    def lookahead(self, step):
        def update(decay):
            for a, t in zip(self.average, self.averaged):
                a.lerp_(t, 1.0 - decay)
                t.copy_(a)
        if step % LOOKAHEAD == 0:
            t = step / self.total_steps
            update(math.pow(LOOKAHEAD_DECAY, LOOKAHEAD) * t * t * t)
        if step == self.total_steps:
            update(1.0)


@torch.no_grad()
def evaluate(model, images, labels, mean, device, autocast, channels_last=True):
    """Loss and accuracy with mgpu's mirror-translate test-time augmentation (train/Tta.cpp):
    0.5 x (mirror-averaged logits) + 0.5 x the mean of the same for the image moved one pixel
    up-left and down-right (reflected borders)."""
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(images), EVAL_BATCH):
        x = images[start:start + EVAL_BATCH].to(device).float() - mean
        y = labels[start:start + EVAL_BATCH].to(device)

        def mirror(v):
            if channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device, dtype=autocast, enabled=autocast is not None):
                return (0.5 * model(v).float() + 0.5 * model(v.flip(-1)).float())

        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        h, w = x.shape[2], x.shape[3]
        moved = torch.stack([mirror(padded[:, :, 0:h, 0:w]), mirror(padded[:, :, 2:h + 2, 2:w + 2])])
        logits = 0.5 * mirror(x) + 0.5 * moved.mean(0)
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train()
    return loss / len(images), correct / len(images)


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = args.device
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[args.precision]
    started = time.perf_counter()
    (train_x, train_y), (test_x, test_y) = read_cifar(args.data_dir)
    if args.limit_train:
        train_x, train_y = train_x[:args.limit_train], train_y[:args.limit_train]
    if args.limit_test:
        test_x, test_y = test_x[:args.limit_test], test_y[:args.limit_test]
    mean = mean_image(train_x)
    model = Airbench94()
    with torch.no_grad():
        init = train_x[:INIT_IMAGES].float() - mean
        model.whiten.weight.copy_(whitening_filters(model.whiten.weight.shape, init))
    model = model.to(device, memory_format=torch.channels_last)
    train_x, train_y, mean = train_x.to(device), train_y.to(device), mean.to(device)
    steps = len(train_x) // args.batch
    recipe = Recipe(model, args.epochs, steps, autocast=autocast, device=device,
                    compile=args.compile)
    generator = torch.Generator().manual_seed(args.seed)
    flipped = torch.rand(len(train_x), generator=generator) < 0.5
    history, done, train_seconds, images_seen = [], 0, 0.0, 0
    for epoch in range(math.ceil(recipe.total_steps / steps)):
        epoch_start = time.perf_counter()
        epoch_steps = min(steps, recipe.total_steps - epoch * steps)
        order = torch.randperm(len(train_x), generator=generator)
        n = epoch_steps * args.batch
        dx = torch.randint(-TRANSLATE, TRANSLATE + 1, (n,), generator=generator)
        dy = torch.randint(-TRANSLATE, TRANSLATE + 1, (n,), generator=generator)
        flips = flipped[order[:n]] ^ (epoch % 2 == 1)
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long)
        for step in range(1, epoch_steps + 1):
            rows = slice((step - 1) * args.batch, step * args.batch)
            idx = order[rows].to(device)
            x = shift_and_flip(train_x[idx].float() - mean, dx[rows].to(device), dy[rows].to(device),
                               flips[rows].to(device))
            recipe.set_rates(epoch, step)
            done += 1
            loss, right = recipe.step(x, train_y[idx], done)
            loss_sum += loss.float()
            correct += right
        if device == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - epoch_start
        images_seen += n
        val_loss, val_acc = evaluate(recipe.net, test_x, test_y, mean, device, autocast)
        row = dict(epoch=epoch + 1, loss=loss_sum.item() / n, acc=correct.item() / n,
                   val_loss=val_loss, val_acc=val_acc, seconds=time.perf_counter() - epoch_start)
        history.append(row)
        print(f"Epoch {epoch + 1} - {row['seconds']:.1f}s - loss: {row['loss']:.4f} - "
              f"acc: {row['acc']:.4f} - val_loss: {val_loss:.4f} - val_acc: {val_acc:.4f}", flush=True)
    total = time.perf_counter() - started
    result = dict(peer="airbench_reference.py", device=device, threads=args.threads,
                  compiled=args.compile,
                  precision=args.precision, epochs=args.epochs, seed=args.seed,
                  final_val_acc=history[-1]["val_acc"], seconds=total,
                  train_images_per_second=images_seen / train_seconds, history=history)
    print(f"total wall time: {total:.1f}s ({total / 60:.1f} min); final val_acc "
          f"{history[-1]['val_acc']:.4f}; training throughput {result['train_images_per_second']:.1f} images/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


def steps(d):
    torch.set_num_threads(1)
    cfg, images, labels, mean, initial = load_step_dir(d)
    model = Airbench94(cfg["shape"][1], cfg["classes"])
    model.load_state_dict(initial, strict=True)
    ours = whitening_filters(model.whiten.weight.shape, images[:INIT_IMAGES].float() - mean)
    same_init = torch.equal(ours, initial["whiten.weight"])
    model = model.to(memory_format=torch.channels_last).train()
    batch = cfg["batch"]
    steps_per_epoch = len(images) // batch
    recipe = Recipe(model, cfg["epochs"], steps_per_epoch)
    x_all = images.float() - mean
    done = 0
    for epoch in range(math.ceil(recipe.total_steps / steps_per_epoch)):
        for step in range(1, min(steps_per_epoch, recipe.total_steps - epoch * steps_per_epoch) + 1):
            rows = slice((step - 1) * batch, step * batch)
            recipe.set_rates(epoch, step)
            done += 1
            recipe.step(x_all[rows], labels[rows], done)
    final = torch.load(os.path.join(d, "final.pt"))
    worst, name = 0.0, ""
    for key, theirs in model.state_dict().items():
        diff = (final[key].double() - theirs.double()).abs().max().item()
        if diff > worst or not name:
            worst, name = diff, key
    moved = max((final[k].double() - v.double()).abs().max().item()
                for k, v in initial.items() if v.is_floating_point())
    print(f"{done} steps; whitening filters {'the same' if same_init else 'DIFFERENT'}; largest "
          f"difference {worst:.3g} in {name}; the steps changed the state by up to {moved:.3g}")
    return 0 if same_init and worst == 0 and moved > 1e-3 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data-dir", required=True)
    t.add_argument("--epochs", type=float, default=EPOCHS)
    t.add_argument("--batch", type=int, default=BATCH)
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    t.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "off"])
    t.add_argument("--threads", type=int, default=os.cpu_count())
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--compile", action="store_true", help="torch.compile the network")
    t.add_argument("--limit-train", type=int, default=0, help="the first N training images (0: all)")
    t.add_argument("--limit-test", type=int, default=0, help="the first N test images (0: all)")
    t.add_argument("--json")
    s = sub.add_parser("steps")
    s.add_argument("dir")
    args = parser.parse_args()
    if args.command == "train":
        train(args)
        return 0
    return steps(args.dir)


if __name__ == "__main__":
    sys.exit(main())
