"""PyTorch ports of mgpu's models, with the parameter names mgpu's export writes.

Load weights exported by `mgpu export --weights RUN/model.pt --to model.pt`:

    import json, torch
    from mgpu_models import build
    about = json.load(open("model.json"))
    net = build(about["model"], about["input_shape"][0], len(about["classes"]))
    net.load_state_dict(torch.load("model.pt"))
    mean = torch.load("model.mean.pt")            # [C, H, W], pixels 0..255
    logits = net.eval()(images.float() - mean)    # images: [B, C, H, W] uint8, RGB
"""
import json
import os

import torch
import torch.nn.functional as F
from torch import nn


# MiniGoogLeNet (models/MiniGoogLeNet.cpp): Keras batch norm (eps 1e-3, momentum 0.99, which is
# 0.01 in PyTorch's terms) and no conv biases.
class ConvModule(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, same_padding=True):
        super().__init__()
        padding = kernel_size // 2 if same_padding else 0
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class InceptionModule(nn.Module):
    def __init__(self, in_channels, k1x1, k3x3):
        super().__init__()
        self.branch1x1 = ConvModule(in_channels, k1x1, 1)
        self.branch3x3 = ConvModule(in_channels, k3x3, 3)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch3x3(x)], dim=1)


class DownsampleModule(nn.Module):
    def __init__(self, in_channels, k):
        super().__init__()
        self.conv = ConvModule(in_channels, k, 3, stride=2, same_padding=False)
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


class MiniGoogLeNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=10, dropout=0.5):
        super().__init__()
        layers, channels = [ConvModule(in_channels, 96, 3)], 96
        for kind, *k in [("i", 32, 32), ("i", 32, 48), ("d", 80), ("i", 112, 48), ("i", 96, 64),
                         ("i", 80, 80), ("i", 48, 96), ("d", 96), ("i", 176, 160),
                         ("i", 176, 160)]:
            if kind == "i":
                layers.append(InceptionModule(channels, *k))
                channels = sum(k)
            else:
                layers.append(DownsampleModule(channels, *k))
                channels += k[0]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(self.dropout(x))


# ResNet-20 (models/ResNet20.cpp), as in akamaster/pytorch_resnet_cifar10.
class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.added = stride, planes - in_planes

    def shortcut(self, x):
        if self.stride == 1 and self.added == 0:
            return x
        sampled = x[:, :, ::self.stride, ::self.stride]
        return F.pad(sampled, (0, 0, 0, 0, self.added // 2, self.added - self.added // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, in_channels=3, num_classes=10, blocks_per_stage=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)

        def stage(in_planes, planes, stride):
            return nn.Sequential(*[BasicBlock(in_planes if i == 0 else planes, planes,
                                              stride if i == 0 else 1)
                                   for i in range(blocks_per_stage)])
        self.layer1 = stage(16, 16, 1)
        self.layer2 = stage(16, 32, 2)
        self.layer3 = stage(32, 64, 2)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


# airbench94 (models/Airbench94.cpp, after KellerJordan/cifar10-airbench legacy/airbench94.py):
# batch norm with eps 1e-12 and running statistics 0.6 old + 0.4 new, its scale frozen at 1;
# the whitening filters frozen (set from the data, whitening_filters below); the final 3x3 max
# pool of 32x32 images taken as the global maximum, as mgpu does.
def _identity_conv(c_in, c_out, kernel, same, bias):
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2 if same else 0, bias=bias)
    with torch.no_grad():
        if bias:
            conv.bias.zero_()
        nn.init.dirac_(conv.weight[:min(c_in, c_out)])
    return conv


def _shift_only_norm(channels, momentum=0.6):
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=1.0 - momentum)
    norm.weight.requires_grad_(False)
    return norm


class ConvGroup(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv1 = _identity_conv(c_in, c_out, 3, True, False)
        self.norm1 = _shift_only_norm(c_out)
        self.conv2 = _identity_conv(c_out, c_out, 3, True, False)
        self.norm2 = _shift_only_norm(c_out)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class Airbench94(nn.Module):
    def __init__(self, in_channels=3, num_classes=10, widths=(64, 256, 256), scaling=1 / 9):
        super().__init__()
        whiten_width = 2 * in_channels * 2 * 2
        self.whiten = _identity_conv(in_channels, whiten_width, 2, False, True)
        self.whiten.weight.requires_grad_(False)
        self.group1 = ConvGroup(whiten_width, widths[0])
        self.group2 = ConvGroup(widths[0], widths[1])
        self.group3 = ConvGroup(widths[1], widths[2])
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.scaling = scaling

    def forward(self, x):
        x = F.gelu(self.whiten(x))
        x = self.group3(self.group2(self.group1(x)))
        x = x.flatten(2).max(2).values
        return self.head(x) * self.scaling


def whitening_filters(weight_shape, images):
    """airbench's whitening filters for images (float [N, C, H, W], mean subtracted) as mgpu's
    init_airbench94 computes them: eigenvectors of the 2x2 patches' covariance over the square
    root of their eigenvalues plus eps (5e-4 of the mean patch variance), and their negatives."""
    c, h, w = images.size(1), weight_shape[2], weight_shape[3]
    patches = images.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
    covariance = patches.t().matmul(patches) / patches.size(0)
    values, vectors = torch.linalg.eigh(covariance, UPLO="U")
    eps = 5e-4 * covariance.diagonal().mean().item()
    directions = vectors.t().reshape(c * h * w, c, h, w).flip(0)
    scaled = directions / (values.flip(0).view(-1, 1, 1, 1) + eps).sqrt()
    return torch.cat((scaled, -scaled))


PORTS = {"minigooglenet": MiniGoogLeNet, "resnet20": ResNet20, "airbench94": Airbench94}


def build(name, in_channels, num_classes):
    """The port of mgpu model `name`; KeyError if there is none (export still works)."""
    return PORTS[name](in_channels=in_channels, num_classes=num_classes)


def load_step_dir(d):
    """The files a step-equivalence test writes (tests/test_fidelity.cpp, test_airbench94.cpp):
    steps.json, images.bin (uint8 [N, C, H, W]), labels.bin (int64 [N]), the mean image and the
    initial state_dict. Returns (config, images, labels, mean, initial)."""
    cfg = json.load(open(os.path.join(d, "steps.json")))
    def raw(name, dtype):
        with open(os.path.join(d, name), "rb") as f:
            return torch.frombuffer(bytearray(f.read()), dtype=dtype)
    images = raw("images.bin", torch.uint8).reshape(cfg["shape"])
    labels = raw("labels.bin", torch.int64)
    mean = torch.load(os.path.join(d, "initial.mean.pt"))
    initial = torch.load(os.path.join(d, "initial.pt"))
    return cfg, images, labels, mean, initial
