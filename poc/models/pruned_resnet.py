"""ResNet50-0.65x (SCOP-pruned ResNet-50, Tang et al., NeurIPS 2020; MindSpore model zoo
``research/cv/resnet50_adv_pruning``) in plain PyTorch, with MindSpore's parameter names mapped, and its
``index.txt``: where each block's pruned conv3 channels go in the block's full output width.

In MindSpore the placement is a ScatterNd with a hard-coded batch-1 shape. ``fold_scatter`` makes the exact batch-N
equivalent: conv3 with the full width's rows (row idx[k] = pruned row k, the others zero) and bn3 with the pruned
parameters at idx[k] and gamma 0, beta 0, mean 0, var 1 elsewhere, so the exported graph is a standard ResNet.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from poc.shared.bins import read_text_file
from poc.shared.errors import InputError

STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
RATE = 0.65
BN_EPS = 1e-5
INDEX_LINES = sum(STAGE_BLOCKS)  # 16
# Convolutions per layer group, in data-flow order (the sensitivity table's rows): the stem's one, then per stage 3 a
# block and the projection shortcut of its first block.
CONV_GROUPS = (("stem", 1),) + tuple((f"layer{i + 1}", 3 * n + 1) for i, n in enumerate(STAGE_BLOCKS))


def pruned_widths(c: int, rate: float = RATE) -> tuple[int, int]:
    """(p, q): conv1/conv2 width ceil(c*rate) and conv3 width ceil(4c*rate)."""
    return math.ceil(round(c * rate, 6)), math.ceil(round(4 * c * rate, 6))


def block_plan() -> list[tuple[int, int, int]]:
    """(stage, block, c) for every block in network order (the order of index.txt's lines)."""
    return [(s, b, c) for s, (n, c) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS, strict=True)) for b in range(n)]


def read_index(path) -> list[np.ndarray]:
    """``index.txt``: 16 lines of space-separated channel indices, one line per block; each line holds q unique
    indices within the block's full width 4c. Anything else is refused with the line and what is wrong."""
    path = Path(path)
    lines = read_text_file(path, "index file (channel indices)", encoding="ascii", max_bytes=1 << 20).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != INDEX_LINES:
        raise InputError(path, f"{len(lines)} lines, expected {INDEX_LINES} (one per block of ResNet-50)")
    out = []
    for n, (line, (_, _, c)) in enumerate(zip(lines, block_plan(), strict=True), start=1):
        q = pruned_widths(c)[1]
        parts = line.split()
        if not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts):  # a channel, not a 2**70
            bad = next(p for p in parts if not (p.isascii() and p.isdigit() and len(p) <= 6))
            raise InputError(path, f"line {n}: '{bad[:20]}' is not a channel index")
        idx = np.array([int(p) for p in parts], np.int64)
        if len(idx) != q:
            raise InputError(path, f"line {n}: {len(idx)} indices, expected {q} (ceil({4 * c} x {RATE}))")
        if idx.max() >= 4 * c:
            raise InputError(path, f"line {n}: index {int(idx.max())} is outside the block's {4 * c} channels")
        if len(np.unique(idx)) != len(idx):
            raise InputError(path, f"line {n}: an index appears twice")
        out.append(idx)
    return out


class PrunedBottleneck(nn.Module):
    def __init__(self, in_ch: int, c: int, stride: int, index: np.ndarray, projection: bool):
        super().__init__()
        p, q = pruned_widths(c)
        self.out_ch = 4 * c
        self.conv1 = nn.Conv2d(in_ch, p, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(p, eps=BN_EPS)
        self.conv2 = nn.Conv2d(p, p, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(p, eps=BN_EPS)
        self.conv3 = nn.Conv2d(p, q, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(q, eps=BN_EPS)
        self.relu = nn.ReLU()
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.int64), persistent=False)
        self.down_sample_layer = (nn.Sequential(nn.Conv2d(in_ch, 4 * c, 1, stride=stride, bias=False),
                                                nn.BatchNorm2d(4 * c, eps=BN_EPS)) if projection else None)
        self.folded = False

    def forward(self, x):
        identity = x if self.down_sample_layer is None else self.down_sample_layer(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if not self.folded:  # MindSpore's ScatterNd: the q channels into a zero tensor of the full width
            full = out.new_zeros(out.shape[0], self.out_ch, *out.shape[2:])
            full[:, self.index] = out
            out = full
        return self.relu(out + identity)


class PrunedResNet50(nn.Module):
    def __init__(self, index: list[np.ndarray], num_classes: int = 37, softmax: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=BN_EPS)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # MindSpore: zero-pad 1 + valid max-pool, after a ReLU
        in_ch, k = 64, 0
        for s, (n, c) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS, strict=True)):
            blocks = []
            for b in range(n):
                blocks.append(PrunedBottleneck(in_ch, c, 2 if s > 0 and b == 0 else 1, index[k], projection=b == 0))
                in_ch, k = 4 * c, k + 1
            self.add_module(f"layer{s + 1}", nn.Sequential(*blocks))
        self.end_point = nn.Linear(in_ch, num_classes)
        self.softmax = softmax

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(torch.mean(x, dim=(2, 3), keepdim=True), 1)

    def forward(self, x):
        logits = self.end_point(self.features(x))
        return torch.softmax(logits, dim=1) if self.softmax else logits

    def blocks(self):
        return [m for m in self.modules() if isinstance(m, PrunedBottleneck)]


@torch.no_grad()
def fold_scatter(model: PrunedResNet50) -> PrunedResNet50:
    """In place: each block's scatter folded into conv3/bn3 (full-width rows; zero rows and neutral BN elsewhere)."""
    for blk in model.blocks():
        if blk.folded:
            continue
        q, full, idx = blk.conv3.out_channels, blk.out_ch, blk.index
        conv = nn.Conv2d(blk.conv3.in_channels, full, 1, bias=False)
        conv.weight.zero_()
        conv.weight[idx] = blk.conv3.weight
        bn = nn.BatchNorm2d(full, eps=BN_EPS)
        bn.weight.zero_()
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name)[idx] = getattr(blk.bn3, name)
        assert q == len(idx)
        blk.conv3, blk.bn3, blk.folded = conv, bn.eval(), True
    return model


# ours -> MindSpore parameter names: a BN's weight/bias/running_mean/running_var are gamma/beta/moving_mean/moving_variance
_BN_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def ms_name(torch_key: str) -> str:
    back = {v: k for k, v in _BN_NAMES.items()}
    head, _, last = torch_key.rpartition(".")
    is_bn = ".bn" in f".{head}" or head.endswith("down_sample_layer.1") or head == "bn1"
    return f"{head}.{back[last]}" if is_bn and last in back else torch_key


# --- the demo recipe's parts (poc.demo.weights) -----------------------------------------------------------------

def demo_network(num_classes: int, seed: int, residual_gain: float, index_file=None) -> PrunedResNet50:
    """A seeded random ResNet50-0.65x with the channel placement of ``index_file``, each block's bn3 gamma =
    ``residual_gain``."""
    torch.manual_seed(seed)
    model = PrunedResNet50(read_index(index_file), num_classes=num_classes)
    with torch.no_grad():
        for blk in model.blocks():
            torch.nn.init.constant_(blk.bn3.weight, residual_gain)
    return model


def classifier(model: PrunedResNet50) -> nn.Linear:
    return model.end_point


def feature_network(model: PrunedResNet50) -> PrunedResNet50:
    """A copy with the scatter folded: the same features, exportable at any batch (the model keeps its scatter, the
    form its checkpoint stores)."""
    return fold_scatter(copy.deepcopy(model))
