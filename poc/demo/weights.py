"""Demo checkpoint: an mmcls-format ResNet-50 that classifies the built-in demo data set, made without
training the backbone.

A seeded random backbone (each residual branch given a small gain, the last BN gamma = 0.2, which keeps the
random network out of the chaotic regime where INT8 error explodes for reasons unrelated to quantization),
its batch-norm statistics re-estimated on training images, and ``head.fc`` fitted in closed form (ridge
regression on the pooled features), then its logits scaled so the softmax is calibrated.
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from poc import profiles
from poc.config import INPUT_NAME, MEAN_RGB_255, ONNX_OPSET, STD_RGB_255
from poc.demo.lite_converter import from_onnx
from poc.engines.onnxruntime import OnnxRuntimeBackend
from poc.formats import cifar
from poc.formats.ms_lite import write_ms
from poc.formats.pth import save_checkpoint
from poc.models.mmcls_resnet import ImageClassifier, residual_gain_bns
from poc.models.plain_resnet import PlainResNet50
from poc.models.torch_onnx import torchscript_export
from poc.shared.bins import normalise, spread_sample
from poc.shared.progress import Log

RESIDUAL_GAIN = 0.2
FEATURE_BATCH = 64


def random_backbone(num_classes: int, seed: int) -> ImageClassifier:
    torch.manual_seed(seed)
    model = ImageClassifier(num_classes)
    for bn in residual_gain_bns(model):
        torch.nn.init.constant_(bn.weight, RESIDUAL_GAIN)
    return model


@torch.no_grad()
def reestimate_bn(model, images: np.ndarray, log: Log, mean=MEAN_RGB_255, std=STD_RGB_255) -> None:
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


def pooled_features(model, images: np.ndarray, log: Log, desc: str, mean=MEAN_RGB_255, std=STD_RGB_255,
                    hw: int = 32) -> np.ndarray:
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


DIRAC_NOISE = 0.15


@torch.no_grad()
def dirac_plain_resnet(num_classes: int, seed: int) -> PlainResNet50:
    """A random plain ResNet-50 whose convolutions start near identity (Dirac) plus noise, as the residual
    distillation code initialises it: without shortcuts, a random deep network maps every image onto nearly the
    same features; near-identity layers carry the stem's features through."""
    torch.manual_seed(seed)
    model = PlainResNet50(num_classes)
    for m in model.blocks.modules():
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] == m.kernel_size[1]:
            noise = m.weight.data.clone()
            torch.nn.init.dirac_(m.weight)
            m.weight.data += DIRAC_NOISE * noise
    return model


def fc_of(model) -> torch.nn.Linear:
    return model.head.fc if isinstance(model, ImageClassifier) else model.fc


def top1(model, feats: np.ndarray, labels: np.ndarray) -> float:
    w = fc_of(model).weight.detach().numpy().astype(np.float64)
    b = fc_of(model).bias.detach().numpy().astype(np.float64)
    return float(((feats @ w.T + b).argmax(1) == labels).mean() * 100)


def data_signature(data_dir, profile: profiles.Profile | None = None) -> str:
    """Which data a demo checkpoint was fitted on: the splits' sizes and modification times."""
    profile = profile or profiles.get(None)
    parts = []
    for name in (profile.calib_split, profile.eval_split):
        st = (Path(data_dir) / ("annotations" if profile.dataset == "pets" else "") / name).stat()
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


def make_demo_model(data_dir, out_path, seed: int = 0, bn_images: int = 256, max_train: int = 3000,
                    log: Log | None = None, profile: profiles.Profile | None = None) -> float:
    """Build and save the demo checkpoint; returns its FP32 top-1 (%) on the data set's test split.

    At most ``max_train`` training images (spread over the classes) are used, so a real 50,000-image
    CIFAR-100 train split still takes about a minute. The plain-ResNet profile's is written as a MindSpore Lite
    ``.ms``, as the Lite converter would have written it, so the demo walks the real asset's path.
    """
    log = log or Log(stage="demo-model")
    profile = profile or profiles.get(None)
    start = time.perf_counter()
    train = cifar.load_split(f"{data_dir}/{profile.calib_split}")
    test = cifar.load_split(f"{data_dir}/{profile.eval_split}")
    mean, std = profile.mean_rgb_255, profile.std_rgb_255
    if profile.arch == "plain_resnet50":
        model = dirac_plain_resnet(train.num_classes, seed)
    else:
        model = random_backbone(train.num_classes, seed)
    fit_idx = np.sort(spread_sample(train.labels, min(max_train, len(train)), seed))
    reestimate_bn(model, train.chw(fit_idx[:bn_images]), log, mean, std)
    train_feats = pooled_features(model, train.chw(fit_idx), log, "train features", mean, std)
    train_labels = train.labels[fit_idx]
    w, b = fit_head(train_feats, train_labels, train.num_classes)
    fc_of(model).weight.data = torch.from_numpy(w)
    fc_of(model).bias.data = torch.from_numpy(b)
    test_feats = pooled_features(model, test.chw(), log, "test features", mean, std)
    train_acc, test_acc = top1(model, train_feats, train_labels), top1(model, test_feats, test.labels)
    meta = {"source": "poc.demo_model", "seed": seed, "data": str(data_dir),
            "data_signature": data_signature(data_dir, profile), "fp32_top1_test": round(test_acc, 2)}
    if profile.weights == "ms":
        write_demo_ms(model, out_path, meta)
    else:
        meta.update(residual_gain=RESIDUAL_GAIN, CLASSES=cifar.load_class_names(f"{data_dir}/meta"))
        save_checkpoint(model, out_path, meta)
    log(f"wrote {out_path}: FP32 top-1 train {train_acc:.2f} % ({len(fit_idx)} images), "
        f"test {test_acc:.2f} % ({len(test)} images) in {time.perf_counter() - start:.0f} s")
    return test_acc


def write_demo_ms(model: PlainResNet50, out_path, meta: dict) -> None:
    """The model as the Lite 1.1 converter wrote the published file from its ONNX export (logits out): the authors'
    ``view`` flatten as a computed shape with untyped tensors after it, nodes in the converter's breadth-first order."""
    model.softmax = False
    buf = io.BytesIO()
    torchscript_export(model, buf, ONNX_OPSET, "logits", {INPUT_NAME: {0: "batch"}})
    model.softmax = True
    write_ms(from_onnx(onnx.load_from_string(buf.getvalue()), "1.1", "matmul", order="bfs"), out_path)
    _sidecar(out_path).write_text(json.dumps(meta, indent=2))


def make_demo_pets_model(data_dir, out_path, seed: int = 0, bn_images: int = 128, log: Log | None = None,
                         profile: profiles.Profile | None = None) -> float:
    """The demo ResNet50-0.65x for the demo Pet set, the same recipe (random backbone with a small residual-branch
    gain, BN statistics re-estimated, a ridge-fitted head), written as a MindSpore checkpoint in the 1.x layout
    (large parameters in slices) with the profile's index.txt; returns its FP32 top-1 (%) on the test split."""
    import copy
    from concurrent.futures import ThreadPoolExecutor

    from poc.formats import pets
    from poc.formats.ms_ckpt import write_ckpt
    from poc.models.pruned_resnet import PrunedResNet50, fold_scatter, ms_name, read_index
    log = log or Log(stage="demo-model")
    profile = profile or profiles.get("ms-resnet50-0.65x-pets")
    start = time.perf_counter()
    data_dir = Path(data_dir)

    def load(split):
        entries = pets.read_split(data_dir / "annotations" / split)
        with ThreadPoolExecutor(max_workers=2) as pool:
            hwc = np.stack(list(pool.map(pets.load_image, [data_dir / "images" / f"{n}.jpg" for n, _ in entries])))
        return hwc.transpose(0, 3, 1, 2), np.array([label for _, label in entries])

    (train_x, train_y), (test_x, test_y) = load(profile.calib_split), load(profile.eval_split)
    torch.manual_seed(seed)
    model = PrunedResNet50(read_index(profile.index_file), num_classes=len(pets.CLASSES))
    with torch.no_grad():
        for blk in model.blocks():
            torch.nn.init.constant_(blk.bn3.weight, RESIDUAL_GAIN)
    mean, std = profile.mean_rgb_255, profile.std_rgb_255
    fit_idx = np.sort(spread_sample(train_y, len(train_y), seed))
    reestimate_bn(model, train_x[fit_idx[:bn_images]], log, mean, std)
    folded = fold_scatter(copy.deepcopy(model))  # the same network without the scatter: exportable at batch N
    train_feats = pooled_features(folded, train_x, log, "train features", mean, std, hw=pets.CROP)
    w, b = fit_head(train_feats, train_y, len(pets.CLASSES))
    model.end_point.weight.data = torch.from_numpy(w)
    model.end_point.bias.data = torch.from_numpy(b)
    test_feats = pooled_features(folded, test_x, log, "test features", mean, std, hw=pets.CROP)
    train_acc = float(((train_feats @ w.T.astype(np.float64) + b).argmax(1) == train_y).mean() * 100)
    test_acc = float(((test_feats @ w.T.astype(np.float64) + b).argmax(1) == test_y).mean() * 100)
    params = {ms_name(k): v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    write_ckpt(out_path, params, "1.x")
    _sidecar(out_path).write_text(json.dumps({"source": "poc.demo_model", "seed": seed, "data": str(data_dir),
                                              "data_signature": data_signature(data_dir, profile),
                                              "fp32_top1_test": round(test_acc, 2)}, indent=2))
    log(f"wrote {out_path}: FP32 top-1 train {train_acc:.2f} % ({len(train_y)} images), test {test_acc:.2f} % "
        f"({len(test_y)} images) in {time.perf_counter() - start:.0f} s")
    return test_acc
