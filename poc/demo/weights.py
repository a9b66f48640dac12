"""Demo checkpoint: an mmcls-format ResNet-50 that classifies the built-in demo data set, made without
training the backbone.

A seeded random backbone (each residual branch given a small gain, the last BN gamma = 0.2, which keeps the
random network out of the chaotic regime where INT8 error explodes for reasons unrelated to quantization),
its batch-norm statistics re-estimated on training images, and ``head.fc`` fitted in closed form (ridge
regression on the pooled features), then its logits scaled so the softmax is calibrated.
"""
from __future__ import annotations

import importlib
import io
import json
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from poc import profiles
from poc.config import INPUT_NAME, ONNX_OPSET
from poc.demo.lite_converter import from_onnx
from poc.engines.onnxruntime import OnnxRuntimeBackend
from poc.formats import data_sets
from poc.formats.ms_ckpt import write_ckpt
from poc.formats.ms_lite import write_ms
from poc.formats.pth import save_checkpoint
from poc.models.pruned_resnet import ms_name
from poc.models.torch_onnx import torchscript_export
from poc.shared.bins import normalise, spread_sample
from poc.shared.progress import Log

RESIDUAL_GAIN = 0.2
FEATURE_BATCH = 64


@torch.no_grad()
def reestimate_bn(model, images: np.ndarray, log: Log, mean, std) -> None:
    """Running BN statistics = the exact average over ``images`` (momentum None), as SWA's bn_update."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for i in log.bar(range(0, len(images), FEATURE_BATCH), desc="BN statistics", unit="batch"):
        model.features(torch.from_numpy(normalise(images[i:i + FEATURE_BATCH], mean, std)))
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


def pooled_features(model, images: np.ndarray, log: Log, desc: str, mean, std,
                    hw: int) -> np.ndarray:
    """Pooled 2048-d features, run by ONNX Runtime (faster than eager PyTorch on a CPU)."""
    buf = io.BytesIO()
    torchscript_export(_Features(model), buf, 13, "features", {INPUT_NAME: {0: "batch"}}, hw=hw)
    backend = OnnxRuntimeBackend().load(buf.getvalue())
    out = [backend.predict({INPUT_NAME: normalise(images[i:i + FEATURE_BATCH], mean, std)})[0]
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


def data_signature(data_dir, profile: profiles.Profile | None = None) -> str:
    """Which data a demo checkpoint was fitted on: the splits' sizes and modification times."""
    profile = profile or profiles.get(None)
    parts = []
    for name in (profile.calib_split, profile.eval_split):
        st = data_sets.split_path(profile.dataset, data_dir, name).stat()
        parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return " ".join(parts)


def _sidecar(out_path) -> Path:
    return Path(f"{out_path}.json")  # what a .ms file cannot hold: where it came from


def is_up_to_date(data_dir, out_path, profile: profiles.Profile | None = None) -> bool:
    """True when ``out_path`` is a demo checkpoint fitted on exactly this data (so it can be reused)."""
    try:
        if str(out_path).endswith((".ms", ".ckpt")):
            meta = json.loads(_sidecar(out_path).read_text()) if Path(out_path).is_file() else {}
        else:
            meta = torch.load(out_path, map_location="cpu", weights_only=True).get("meta", {})
        return meta.get("source") == "poc.demo_model" and \
            meta.get("data_signature") == data_signature(data_dir, profile)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not up to date
        return False


# Images whose BN statistics the demo recipe averages, at most: 256 CIFAR images, 128 Pet crops (6.4 M pixels).
BN_PIXELS = 128 * 224 * 224


def make_demo_model(data_dir, out_path, seed: int = 0, bn_images: int = 256, max_train: int = 3000,
                    log: Log | None = None, profile: profiles.Profile | None = None) -> float:
    """Build and save the profile's demo weights, in the profile's weights format; returns their FP32 top-1 (%) on
    the data set's test split.

    The recipe, the same for every model: the model module's seeded random network (``demo_network``), its BN
    statistics re-estimated on training images, its classifier fitted in closed form on the pooled features. At
    most ``max_train`` training images (spread over the classes) are used, so a real 50,000-image CIFAR-100 train
    split still takes about a minute."""
    log = log or Log(stage="demo-model")
    profile = profile or profiles.get(None)
    start = time.perf_counter()
    train, test = (data_sets.open_split(profile.dataset, data_sets.split_path(profile.dataset, data_dir, split))
                   for split in (profile.calib_split, profile.eval_split))
    arch = importlib.import_module(profile.model_module)
    model = arch.demo_network(train.num_classes, seed, RESIDUAL_GAIN, profile.index_file)
    mean, std = profile.mean_rgb_255, profile.std_rgb_255
    fit_idx = np.sort(spread_sample(train.labels, min(max_train, len(train)), seed))
    bn_images = min(bn_images, BN_PIXELS // (train.hw * train.hw))
    reestimate_bn(model, train.chw(fit_idx[:bn_images]), log, mean, std)
    features = arch.feature_network(model)
    train_feats = pooled_features(features, train.chw(fit_idx), log, "train features", mean, std, train.hw)
    train_labels = train.labels[fit_idx]
    w, b = fit_head(train_feats, train_labels, train.num_classes)
    fc = arch.classifier(model)
    fc.weight.data, fc.bias.data = torch.from_numpy(w), torch.from_numpy(b)
    test_feats = pooled_features(features, test.chw(), log, "test features", mean, std, test.hw)
    train_acc, test_acc = top1(w, b, train_feats, train_labels), top1(w, b, test_feats, test.labels)
    meta = {"source": "poc.demo_model", "seed": seed, "data": str(data_dir),
            "data_signature": data_signature(data_dir, profile), "fp32_top1_test": round(test_acc, 2)}
    WRITERS[profile.weights](model, out_path, meta, train.class_names, test.hw)
    log(f"wrote {out_path}: FP32 top-1 train {train_acc:.2f} % ({len(fit_idx)} images), "
        f"test {test_acc:.2f} % ({len(test)} images) in {time.perf_counter() - start:.0f} s")
    return test_acc


def top1(w: np.ndarray, b: np.ndarray, feats: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 (%) of the fitted classifier (``w``, ``b``) on pooled features."""
    return float(((feats @ w.T.astype(np.float64) + b.astype(np.float64)).argmax(1) == labels).mean() * 100)


def write_demo_pth(model, out_path, meta: dict, class_names, hw: int) -> None:
    """An mmcls checkpoint (``meta`` with the class names, as mmcls keeps them)."""
    save_checkpoint(model, out_path, {**meta, "residual_gain": RESIDUAL_GAIN, "CLASSES": class_names})


def write_demo_ms(model, out_path, meta: dict, class_names, hw: int) -> None:
    """The model as the Lite 1.1 converter wrote the published file from its ONNX export (logits out): the authors'
    ``view`` flatten as a computed shape with untyped tensors after it, nodes in the converter's breadth-first order."""
    model.softmax = False
    buf = io.BytesIO()
    torchscript_export(model, buf, ONNX_OPSET, "logits", {INPUT_NAME: {0: "batch"}}, hw)
    model.softmax = True
    write_ms(from_onnx(onnx.load_from_string(buf.getvalue()), "1.1", "matmul", order="bfs"), out_path)
    _sidecar(out_path).write_text(json.dumps(meta, indent=2))


def write_demo_ckpt(model, out_path, meta: dict, class_names, hw: int) -> None:
    """A MindSpore checkpoint in the 1.x layout (large parameters in slices), MindSpore's parameter names."""
    params = {ms_name(k): v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    write_ckpt(out_path, params, "1.x")
    _sidecar(out_path).write_text(json.dumps(meta, indent=2))


WRITERS = {"pth": write_demo_pth, "ms": write_demo_ms, "ckpt": write_demo_ckpt}  # by the profile's weights format
