"""The shortcut-free ResNet-50 of residual distillation (Li et al., NeurIPS 2020; the authors' ``resnet_cifar.py``),
the network of the MindSpore Hub card "ResNet50 Residual Distillation", in plain PyTorch.

Stem 3x3/1 conv + BN + ReLU, no max-pool; pre-activation bottlenecks (the block starts with a ReLU on its input,
conv3's BN has no ReLU after it); only the first block of stages 2-4 keeps a shortcut, a 1x1 stride-2 projection +
BN of the (ReLU'd) input; every other block is plain (no add). Head: ReLU, global average pool, Linear 2048 -> 10.
"""
from __future__ import annotations

import torch
from torch import nn

STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
# Convolutions per layer group, in data-flow order (the sensitivity table's rows): the stem's one, then per stage 3 a
# block, and a projection in the first block of stages 2-4 only (the only shortcuts left).
CONV_GROUPS = (("stem", 1),) + tuple((f"layer{i + 1}", 3 * n + (i > 0)) for i, n in enumerate(STAGE_BLOCKS))


class PlainBottleneck(nn.Module):
    def __init__(self, in_ch: int, width: int, stride: int, shortcut: bool):
        super().__init__()
        out_ch = width * EXPANSION
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.shortcut = (nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))
                         if shortcut else None)

    def forward(self, x):
        x = self.relu(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.shortcut is not None else out


class PlainResNet50(nn.Module):
    def __init__(self, num_classes: int = 10, softmax: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        blocks, in_ch = [], 64
        for stage, (n, width) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS, strict=True)):
            for b in range(n):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(PlainBottleneck(in_ch, width, stride, shortcut=stage > 0 and b == 0))
                in_ch = width * EXPANSION
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_ch, num_classes)
        self.softmax = softmax

    def features(self, x):
        x = self.blocks(self.relu(self.bn1(self.conv1(x))))
        x = torch.mean(self.relu(x), dim=(2, 3), keepdim=True)
        return x.view(x.size(0), -1)  # the authors' flatten (exported as Shape, Gather, Unsqueeze, Concat, Reshape)

    def forward(self, x):
        logits = self.fc(self.features(x))
        return torch.softmax(logits, dim=1) if self.softmax else logits


# --- the demo recipe's parts (poc.demo.weights) -----------------------------------------------------------------

DIRAC_NOISE = 0.15


@torch.no_grad()
def demo_network(num_classes: int, seed: int, residual_gain: float = 0.0, index_file=None) -> PlainResNet50:
    """A random plain ResNet-50 whose convolutions start near identity (Dirac) plus noise, as the residual
    distillation code initialises it: without shortcuts, a random deep network maps every image onto nearly the
    same features; near-identity layers carry the stem's features through (there is no residual branch to gain)."""
    torch.manual_seed(seed)
    model = PlainResNet50(num_classes)
    for m in model.blocks.modules():
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] == m.kernel_size[1]:
            noise = m.weight.data.clone()
            torch.nn.init.dirac_(m.weight)
            m.weight.data += DIRAC_NOISE * noise
    return model


def classifier(model: PlainResNet50) -> nn.Linear:
    return model.fc


def feature_network(model: PlainResNet50) -> PlainResNet50:
    return model
