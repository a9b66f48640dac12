"""mmcls ResNet_CIFAR depth 50 + GlobalAveragePooling + LinearClsHead, in plain PyTorch.

Parameter names match mmcls's exactly (``backbone.layer1.0.conv1.weight`` ... ``head.fc.bias``), so a real
``resnet50_b16x8_cifar100_20210528-67b58a1b.pth`` loads with ``strict=True``.
"""
from __future__ import annotations

import torch
from torch import nn

from poc.formats.pth import extract_state_dict, read_checkpoint, some_names
from poc.shared.errors import InputError

STAGE_BLOCKS = (3, 4, 6, 3)  # depth 50
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
FEATURE_DIM = STAGE_WIDTHS[-1] * EXPANSION  # 2048
# Convolutions per layer group, in data-flow order (the sensitivity table's rows): the stem's one, then per stage 3 a
# block and the projection of its first block (every stage has one: 64 -> 256 channels in stage 1 too).
CONV_GROUPS = (("stem", 1),) + tuple((f"layer{i + 1}", 3 * n + 1) for i, n in enumerate(STAGE_BLOCKS))


class Bottleneck(nn.Module):
    """mmcls Bottleneck, style 'pytorch': the stride sits on the 3x3 conv."""

    def __init__(self, in_ch: int, mid_ch: int, stride: int):
        super().__init__()
        out_ch = mid_ch * EXPANSION
        self.conv1 = nn.Conv2d(in_ch, mid_ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_ch)
        self.conv2 = nn.Conv2d(mid_ch, mid_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_ch)
        self.conv3 = nn.Conv2d(mid_ch, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)  # after conv3, as mmcls: the same node order
        return self.relu(out + identity)


class ResNetCIFAR(nn.Module):
    """Stem 3x3 stride 1 (no max-pool), four bottleneck stages, returns the last stage's feature map."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        in_ch = 64
        for i, (blocks, width) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS, strict=False)):
            stride = 1 if i == 0 else 2
            layer = []
            for j in range(blocks):
                layer.append(Bottleneck(in_ch, width, stride if j == 0 else 1))
                in_ch = width * EXPANSION
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class LinearClsHead(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, feats):
        return self.fc(feats)


class ImageClassifier(nn.Module):
    """backbone -> global average pooling -> head; ``softmax=True`` gives mmdeploy's end2end output."""

    def __init__(self, num_classes: int = 100, softmax: bool = True):
        super().__init__()
        self.backbone = ResNetCIFAR()
        self.neck = nn.AdaptiveAvgPool2d((1, 1))  # mmcls GlobalAveragePooling (no parameters)
        self.head = LinearClsHead(num_classes)
        self.softmax = softmax

    def features(self, x):
        # mmcls's neck reshapes with view(n, -1); mmdeploy rewrites that to a flatten, and end2end.onnx is what
        # mmdeploy writes: one Flatten node instead of Shape/Gather/Unsqueeze/Concat/Reshape
        return torch.flatten(self.neck(self.backbone(x)), 1)

    def forward(self, x):
        logits = self.head(self.features(x))
        return torch.softmax(logits, dim=1) if self.softmax else logits


def residual_gain_bns(model: ImageClassifier):
    """The last BN of every residual branch (bn3), whose gamma sets the branch's gain."""
    return [m.bn3 for name, m in model.backbone.named_modules() if isinstance(m, Bottleneck)]


def build_model(path, trust: bool = False, softmax: bool = True, log=print) -> tuple[ImageClassifier, dict]:
    """The model with the checkpoint's weights loaded strictly; also returns the checkpoint's ``meta``."""
    obj = read_checkpoint(path, trust, log)
    state = extract_state_dict(path, obj)
    fc = state.get("head.fc.weight")
    if fc is None or fc.ndim != 2:
        raise InputError(path, "no 2-D 'head.fc.weight': not an mmcls ResNet classifier checkpoint")
    if fc.shape[0] < 2:
        raise InputError(path, f"'head.fc.weight' {list(fc.shape)}: a classifier has at least 2 classes")
    model = ImageClassifier(num_classes=int(fc.shape[0]), softmax=softmax)
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    mismatched = [f"{k} {list(state[k].shape)} != {list(v.shape)}" for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {some_names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {some_names(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {some_names(mismatched, 3)}")
    if problems:
        raise InputError(path, "does not fit mmcls ResNet_CIFAR-50: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    model.eval()
    meta = obj.get("meta", {}) if isinstance(obj.get("meta", {}), dict) else {}
    return model, meta


# --- the demo recipe's parts (poc.demo.weights): the random network it starts from, the layer it fits ----------

def demo_network(num_classes: int, seed: int, residual_gain: float, index_file=None) -> ImageClassifier:
    """A seeded random network, each residual branch's last BN gamma = ``residual_gain``."""
    torch.manual_seed(seed)
    model = ImageClassifier(num_classes)
    for bn in residual_gain_bns(model):
        torch.nn.init.constant_(bn.weight, residual_gain)
    return model


def classifier(model: ImageClassifier) -> nn.Linear:
    return model.head.fc


def feature_network(model: ImageClassifier) -> ImageClassifier:
    """The network whose ``features`` are exported to compute pooled features: the model itself."""
    return model
