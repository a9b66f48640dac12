"""Demo checkpoint: an mmcls-format ResNet-50 that classifies the built-in demo data set, made without
training the backbone.

A seeded random backbone (each residual branch given a small gain, the last BN gamma = 0.2, which keeps the
random network out of the chaotic regime where INT8 error explodes for reasons unrelated to quantization),
its batch-norm statistics re-estimated on training images, and ``head.fc`` fitted in closed form (ridge
regression on the pooled features), then its logits scaled so the softmax is calibrated.
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch

from . import cifar
from .backends import OnnxRuntimeBackend
from .checkpoint import save_checkpoint
from .config import DEMO_CHECKPOINT, DEMO_DATA_DIR, INPUT_NAME
from .errors import run_main
from .export import torchscript_export
from .files import normalise, spread_sample
from .model import ImageClassifier, residual_gain_bns
from .progress import Log

RESIDUAL_GAIN = 0.2
FEATURE_BATCH = 64


def random_backbone(num_classes: int, seed: int) -> ImageClassifier:
    torch.manual_seed(seed)
    model = ImageClassifier(num_classes)
    for bn in residual_gain_bns(model):
        torch.nn.init.constant_(bn.weight, RESIDUAL_GAIN)
    return model


@torch.no_grad()
def reestimate_bn(model: ImageClassifier, images: np.ndarray, log: Log) -> None:
    """Running BN statistics = the exact average over ``images`` (momentum None), as SWA's bn_update."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for i in log.bar(range(0, len(images), FEATURE_BATCH), desc="BN statistics", unit="batch"):
        model.backbone(torch.from_numpy(normalise(images[i:i + FEATURE_BATCH])))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    model.eval()


class _Features(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.features(x)


def pooled_features(model: ImageClassifier, images: np.ndarray, log: Log, desc: str) -> np.ndarray:
    """Pooled 2048-d features, run by ONNX Runtime (faster than eager PyTorch on a CPU)."""
    buf = io.BytesIO()
    torchscript_export(_Features(model), buf, 13, "features", {INPUT_NAME: {0: "batch"}})
    backend = OnnxRuntimeBackend().load(buf.getvalue())
    out = [backend.predict({INPUT_NAME: normalise(images[i:i + FEATURE_BATCH])})[0]
           for i in log.bar(range(0, len(images), FEATURE_BATCH), desc=desc, unit="batch")]
    return np.concatenate(out).astype(np.float64)


def fit_head(feats: np.ndarray, labels: np.ndarray, num_classes: int, ridge: float = 0.1):
    """Closed-form ridge regression of one-hot targets on standardised features; returns (W, b) for fc."""
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    z = (feats - mu) / sd
    onehot = np.eye(num_classes)[labels]
    gram = z.T @ z + ridge * len(z) * np.eye(z.shape[1])
    w = np.linalg.solve(gram, z.T @ (onehot - onehot.mean(0)))      # [D, C] on standardised features
    w_raw = w / sd[:, None]                                          # fold the standardisation into fc
    b_raw = onehot.mean(0) - mu @ w_raw
    # Scale logits so the softmax is calibrated on the training set (least negative log-likelihood).
    logits = feats @ w_raw + b_raw
    best = min((_nll(logits * t, labels), t) for t in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64))[1]
    return (w_raw * best).T.astype(np.float32), (b_raw * best).astype(np.float32)


def _nll(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits - logits.max(1, keepdims=True)
    return float(-(z[np.arange(len(z)), labels] - np.log(np.exp(z).sum(1))).mean())


def top1(model: ImageClassifier, feats: np.ndarray, labels: np.ndarray) -> float:
    w = model.head.fc.weight.detach().numpy().astype(np.float64)
    b = model.head.fc.bias.detach().numpy().astype(np.float64)
    return float(((feats @ w.T + b).argmax(1) == labels).mean() * 100)


def data_signature(data_dir) -> str:
    """Which data a demo checkpoint was fitted on: the splits' sizes and modification times."""
    parts = []
    for name in ("train", "test"):
        st = (Path(data_dir) / name).stat()
        parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return " ".join(parts)


def is_up_to_date(data_dir, out_path) -> bool:
    """True when ``out_path`` is a demo checkpoint fitted on exactly this data (so it can be reused)."""
    try:
        meta = torch.load(out_path, map_location="cpu", weights_only=True).get("meta", {})
        return meta.get("source") == "poc.demo_model" and meta.get("data_signature") == data_signature(data_dir)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not up to date
        return False


def make_demo_model(data_dir, out_path, seed: int = 0, bn_images: int = 256, max_train: int = 3000,
                    log: Log | None = None) -> float:
    """Build and save the demo checkpoint; returns its FP32 top-1 (%) on the data set's test split.

    At most ``max_train`` training images (spread over the classes) are used, so a real 50,000-image
    CIFAR-100 train split still takes about a minute.
    """
    log = log or Log(stage="demo-model")
    start = time.perf_counter()
    train = cifar.load_split(f"{data_dir}/train")
    test = cifar.load_split(f"{data_dir}/test")
    model = random_backbone(train.num_classes, seed)
    fit_idx = np.sort(spread_sample(train.labels, min(max_train, len(train)), seed))
    reestimate_bn(model, train.chw(fit_idx[:bn_images]), log)
    train_feats = pooled_features(model, train.chw(fit_idx), log, "train features")
    train_labels = train.labels[fit_idx]
    w, b = fit_head(train_feats, train_labels, train.num_classes)
    model.head.fc.weight.data = torch.from_numpy(w)
    model.head.fc.bias.data = torch.from_numpy(b)
    test_feats = pooled_features(model, test.chw(), log, "test features")
    train_acc, test_acc = top1(model, train_feats, train_labels), top1(model, test_feats, test.labels)
    meta = {"source": "poc.demo_model", "seed": seed, "residual_gain": RESIDUAL_GAIN, "data": str(data_dir),
            "data_signature": data_signature(data_dir),
            "CLASSES": cifar.load_class_names(f"{data_dir}/meta"), "fp32_top1_test": round(test_acc, 2)}
    save_checkpoint(model, out_path, meta)
    log(f"wrote {out_path}: FP32 top-1 train {train_acc:.2f} % ({len(fit_idx)} images), "
        f"test {test_acc:.2f} % ({len(test)} images) in {time.perf_counter() - start:.0f} s")
    return test_acc


def main():
    p = argparse.ArgumentParser(description="Make the demo mmcls-format checkpoint for the demo data set.")
    p.add_argument("--data", default=DEMO_DATA_DIR, help="CIFAR-100 python folder (default: %(default)s)")
    p.add_argument("--out", default=DEMO_CHECKPOINT, help="checkpoint to write (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="backbone seed (default: 0)")
    p.add_argument("--bn_images", type=int, default=256, help="images for BN statistics (default: 256)")
    p.add_argument("--max_train", type=int, default=3000, help="training images used at most (default: 3000)")
    p.add_argument("--if_stale", action="store_true",
                   help="do nothing when --out is already a demo checkpoint fitted on this data")
    p.add_argument("--quiet", action="store_true", help="no progress or log lines")
    args = p.parse_args()
    if args.if_stale and is_up_to_date(args.data, args.out):
        Log(args.quiet, "demo-model")(f"{args.out} is up to date for {args.data}")
        return
    make_demo_model(args.data, args.out, args.seed, args.bn_images, args.max_train, Log(args.quiet, "demo-model"))


if __name__ == "__main__":
    run_main(main)
