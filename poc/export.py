"""Stage 3: mmcls checkpoint -> models/end2end.onnx, the graph mmdeploy's
``classification_onnxruntime_dynamic.py`` produces: opset 11, input ``input`` float32 [batch,3,height,width]
(already normalised), output ``output`` = softmax [batch,num_classes], batch norm folded.

Two exporters: mmdeploy's ``torch2onnx`` (the ModelZoo's way, when the OpenMMLab stack is installed) and the
native TorchScript exporter on the plain-PyTorch model. Either way the file is checked with ``onnx.checker``
and compared with PyTorch on ONNX Runtime before it is renamed into place.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from poc.config import (
    IMAGE_CHANNELS,
    INPUT_NAME,
    ONNX_OPSET,
    OUTPUT_NAME,
    PUBLISHED_ASSETS_SHA256,
    SOURCE_KEY,
)
from poc.engines.onnxruntime import OnnxRuntimeBackend
from poc.formats.ms_ckpt import read_ckpt
from poc.formats.ms_lite import read_ms
from poc.formats.ms_lite_onnx import contract_output, to_onnx
from poc.models.mmcls_resnet import ImageClassifier
from poc.models.pruned_resnet import PrunedResNet50, fold_scatter, ms_name, read_index
from poc.models.torch_onnx import torchscript_export
from poc.shared.errors import InputError, StageError, atomic_path, first_line
from poc.shared.progress import Log

PARITY_TOLERANCE = 1e-4
DYNAMIC_AXES = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch"}}
MMDEPLOY_REQUIREMENTS = "requirements-mmdeploy.txt"
# mmdeploy's configs/mmcls/classification_onnxruntime_dynamic.py (its wheel ships no configs/).
MMDEPLOY_DEPLOY_CFG = dict(
    codebase_config=dict(type="mmpretrain", task="Classification"),
    backend_config=dict(type="onnxruntime"),
    onnx_config=dict(type="onnx", export_params=True, keep_initializers_as_inputs=False, opset_version=ONNX_OPSET,
                     save_file="end2end.onnx", input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                     input_shape=None, optimize=True, dynamic_axes=DYNAMIC_AXES),
)
MMPRETRAIN_CONFIG = "resnet/resnet50_8xb16_cifar100.py"


class ExportError(StageError):
    """The export itself went wrong (checker, parity); nothing is left at the output path."""


def mmdeploy_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("mmdeploy", "mmpretrain"))


def choose_exporter(requested: str, log: Log) -> str:
    if requested == "mmdeploy" and not mmdeploy_available():
        raise ExportError("--exporter mmdeploy: mmdeploy and mmpretrain are not importable; install the optional "
                          f"OpenMMLab stack with `pip install -r {MMDEPLOY_REQUIREMENTS}` (needs torchvision)")
    if requested == "auto":
        chosen = "mmdeploy" if mmdeploy_available() else "native"
        log(f"exporter: {chosen} (auto: mmdeploy + mmpretrain "
            f"{'importable' if chosen == 'mmdeploy' else 'not importable'})")
        return chosen
    log(f"exporter: {requested}")
    return requested


def export_native(model: ImageClassifier, path, hw: int) -> None:
    torchscript_export(model, str(path), ONNX_OPSET, OUTPUT_NAME, DYNAMIC_AXES, hw)


@contextlib.contextmanager
def _torchscript_exporter_by_default():
    """torch >= 2.9 makes ``torch.onnx.export`` default to the dynamo exporter; mmdeploy 1.3.1 calls it without
    ``dynamo`` and needs the TorchScript one. For the block, a call that does not choose gets ``dynamo=False``."""
    real = torch.onnx.export

    def export(*args, **kwargs):
        kwargs.setdefault("dynamo", False)
        return real(*args, **kwargs)
    torch.onnx.export = export
    try:
        yield
    finally:
        torch.onnx.export = real


def export_mmdeploy(model: ImageClassifier, model_config, path, hw: int) -> None:
    """mmdeploy's ``torch2onnx`` with the deploy config above, as ``tools/deploy.py`` runs it, on a weights-only copy
    of the checkpoint (the model given was loaded by us, with ``--trust_checkpoint`` if it needed it, so mmdeploy's
    own ``torch.load`` never has to trust the file). Everything mmdeploy writes stays in a scratch folder."""
    try:
        from mmdeploy.apis import torch2onnx
        from mmdeploy.apis.core import PIPELINE_MANAGER
        from mmengine import Config
    except Exception as err:  # noqa: BLE001 - a broken OpenMMLab install is one line
        raise ExportError(f"mmdeploy cannot be imported: {first_line(err)}") from None
    if model_config is None:
        import mmpretrain
        model_config = Path(mmpretrain.__file__).parent / ".mim" / "configs" / MMPRETRAIN_CONFIG
    path = Path(path)
    deploy_cfg = Config(MMDEPLOY_DEPLOY_CFG)
    img = np.zeros((hw, hw, IMAGE_CHANNELS), np.uint8)
    with tempfile.TemporaryDirectory(prefix=".mmdeploy.", dir=path.parent) as work:
        weights = Path(work) / "weights.pth"
        torch.save({"meta": {}, "state_dict": model.state_dict()}, weights)
        # the config's class count is CIFAR-100's; the checkpoint's decides (else mmengine loads a mismatched
        # head non-strictly and exports random weights)
        model_cfg = Config.fromfile(str(model_config))
        model_cfg.model.head.num_classes = int(model.head.fc.out_features)
        model_config = Path(work) / "model_config.py"
        model_cfg.dump(str(model_config))
        PIPELINE_MANAGER.enable_multiprocess(False, [torch2onnx])  # in this process, where dynamo=False holds
        try:
            with _torchscript_exporter_by_default():
                # mmdeploy writes <work_dir>/<save_file without its extension>.onnx
                torch2onnx(img, work, "end2end.onnx", deploy_cfg, str(model_config), str(weights), device="cpu")
        except Exception as err:  # noqa: BLE001 - any mmdeploy failure is one line, and nothing is left behind
            raise ExportError(f"mmdeploy's torch2onnx failed: {type(err).__name__}: {first_line(err)}") from None
        written = Path(work) / "end2end.onnx"
        if not written.is_file():
            raise ExportError(f"mmdeploy's torch2onnx wrote no {written.name}")
        os.replace(written, path)


def add_metadata(path, meta: dict) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    onnx.save(model, str(path))


def random_input(batch: int, hw: int, seed: int = 0) -> np.ndarray:
    """A random normalised batch [batch, 3, hw, hw] for the parity checks."""
    return np.random.default_rng(seed).standard_normal((batch, IMAGE_CHANNELS, hw, hw)).astype(np.float32)


def torch_outputs(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def check_and_compare(tmp: Path, out_path: Path, x: np.ndarray, want: np.ndarray, against: str, log: Log) -> None:
    """The written file at ``tmp`` through ``onnx.checker``, then run on ONNX Runtime on ``x`` and compared with
    ``want`` (``against``'s own outputs); any failure is an ExportError, and the file is not renamed into place."""
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"onnx.checker rejected the exported graph: {first_line(err)}") from None
    got = OnnxRuntimeBackend().load(tmp).predict({INPUT_NAME: x})[0]
    diff = float(np.abs(got - want).max())
    verdict = "ok" if diff <= PARITY_TOLERANCE else "FAILED"  # NaN compares False: a NaN diff fails
    log(f"parity ONNX Runtime vs {against} (batch {len(x)}): max abs diff {diff:.2e} (tolerance "
        f"{PARITY_TOLERANCE:g}) {verdict}")
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(f"ONNX Runtime and {against} differ by {diff:.2e} > {PARITY_TOLERANCE:g}; "
                          f"{out_path} not written")


def log_written(out_path: Path, nodes: int, spatial: str, num_classes: int, log: Log) -> None:
    log(f"wrote {out_path}: opset {ONNX_OPSET}, {nodes} nodes, input {INPUT_NAME} [batch,3,{spatial}], "
        f"output {OUTPUT_NAME} [batch,{num_classes}]")


def export_onnx(model: ImageClassifier, out_path, checkpoint_desc: str, exporter: str = "native",
                checkpoint=None, model_config=None, log: Log | None = None, hw: int = 32, mean=(), std=()) -> Path:
    """Export, add metadata, check, compare with PyTorch; the file appears at ``out_path`` only if all pass."""
    log = log or Log(stage="export")
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        if exporter == "mmdeploy":
            export_mmdeploy(model, model_config, tmp, hw)
        else:
            export_native(model, tmp, hw)
        num_classes = int(model.head.fc.out_features)
        source = sha256_of(checkpoint) if checkpoint else hashlib.sha256(checkpoint_desc.encode()).hexdigest()
        add_metadata(tmp, {
            "mean_rgb_255": list(mean), "std_rgb_255": list(std), "num_classes": str(num_classes),
            SOURCE_KEY: source, "source_checkpoint": checkpoint_desc, "exporter": exporter,
            "input_layout": "NCHW float32, normalised",
            "model": "mmcls ResNet_CIFAR depth 50 + GlobalAveragePooling + LinearClsHead (softmax)",
        })
        x = random_input(4, hw)
        check_and_compare(tmp, out_path, x, torch_outputs(model, x), "PyTorch", log)
    log_written(out_path, len(onnx.load(str(out_path)).graph.node), "height,width", num_classes, log)
    return out_path


def random_model(num_classes: int, seed: int) -> ImageClassifier:
    torch.manual_seed(seed)
    model = ImageClassifier(num_classes)
    # Realistic BN statistics so the softmax is not degenerate in parity checks.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.normal_(0, 0.1)
    return model.eval()


def require_checkpoint(checkpoint, random_init: bool, seed):
    if checkpoint is None and not random_init:
        raise InputError("--checkpoint", "no checkpoint given; pass --checkpoint PATH (an mmcls .pth), or "
                                         "--random_init --seed N for random weights")
    if random_init and seed is None:
        raise InputError("--random_init", "needs --seed N, so the random weights can be reproduced")


# --- MindSpore Lite .ms -> end2end.onnx -------------------------------------------------------------------------

def sha256_of(*paths) -> str:
    """The sha256 of one file, or of the files' sha256s in order (a checkpoint and its index.txt)."""
    digests = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
    return digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()


def published_verdict(path) -> str:
    """Whether ``path`` is byte for byte a published asset (by its sha256)."""
    digest = sha256_of(path)
    if digest in PUBLISHED_ASSETS_SHA256.values():
        name = next(k for k, v in PUBLISHED_ASSETS_SHA256.items() if v == digest)
        return f"sha256 {digest[:16]}...: matches the published asset {name}"
    return f"sha256 {digest[:16]}...: differs from every published asset"


def export_ms(ms_path, out_path, log: Log | None = None, samples: int = 2, seed: int = 0, mean=None, std=None,
              max_hw: int | None = None) -> Path:
    """A MindSpore Lite model as ``end2end.onnx``: read (bounds-checked), translated, checked with the ONNX checker
    and verified against the reader's own op-by-op numpy run (max |diff| <= PARITY_TOLERANCE) before it appears.
    An input larger than ``max_hw`` (the profile's) is refused before anything is allocated."""
    log = log or Log(stage="export")
    graph = read_ms(ms_path)
    log(f"{ms_path}: MindSpore Lite ({graph.identifier or 'no identifier'}, {graph.version or 'no version'}), "
        f"{len(graph.nodes)} nodes, {len(graph.tensors)} tensors; {published_verdict(ms_path)}")
    model = to_onnx(graph, max_hw)
    h, w = (d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[2:])
    num_classes = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        model.metadata_props.add(key="source_model", value=str(Path(ms_path).resolve()))
        model.metadata_props.add(key=SOURCE_KEY, value=sha256_of(ms_path))
        model.metadata_props.add(key="exporter", value="poc.ms_onnx (MindSpore Lite .ms)")
        model.metadata_props.add(key="num_classes", value=str(num_classes))
        if mean is not None:
            model.metadata_props.add(key="mean_rgb_255", value=json.dumps(list(mean)))
            model.metadata_props.add(key="std_rgb_255", value=json.dumps(list(std)))
        onnx.save(model, str(tmp))
        x = np.random.default_rng(seed).standard_normal((samples, 3, h, w)).astype(np.float32)
        check_and_compare(tmp, out_path, x, np.stack([contract_output(graph, x[i:i + 1]) for i in range(samples)]),
                          "the .ms graph run op by op", log)
    log_written(out_path, len(model.graph.node), f"{h},{w}", num_classes, log)
    return out_path


# --- MindSpore .ckpt + index.txt (ResNet50-0.65x) -> end2end.onnx -----------------------------------------------

FOLD_TOLERANCE = 1e-5


def build_pruned(ckpt_path, index_path, log: Log):
    """The pruned network with the checkpoint's weights (MindSpore's names mapped); keys that are no network
    parameters (optimizer moments, learning_rate, global_step, ...) are counted and left."""
    ckpt = read_ckpt(ckpt_path)
    index = read_index(index_path)
    log(f"{ckpt_path}: {len(ckpt.params)} tensors (CRC {ckpt.crc}); {published_verdict(ckpt_path)}")
    log(f"{index_path}: {len(index)} blocks; {published_verdict(index_path)}")
    fc = ckpt.params.get("end_point.weight")
    if fc is None or fc.ndim != 2:
        raise InputError(ckpt_path, "no 2-D 'end_point.weight': not a ResNet50-0.65x checkpoint")
    model = PrunedResNet50(index, num_classes=int(fc.shape[0]))
    expected = {ms_name(k): k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(ckpt.params))
    if missing:
        raise InputError(ckpt_path, f"{len(missing)} parameters of ResNet50-0.65x missing: {', '.join(missing[:4])}")
    state = {}
    for name, key in expected.items():
        arr = ckpt.params[name]
        want = tuple(model.state_dict()[key].shape)
        if tuple(arr.shape) != want:
            raise InputError(ckpt_path, f"{name}: shape {list(arr.shape)}, the network (with this index.txt) has "
                                        f"{list(want)}")
        if arr.dtype.kind != "f" or not np.isfinite(arr).all():
            raise InputError(ckpt_path, f"{name}: not finite floating-point values")
        state[key] = torch.from_numpy(arr.astype(np.float32))
    ignored = sorted(set(ckpt.params) - set(expected))
    if ignored or ckpt.skipped:
        log(f"ignored {len(ignored) + len(ckpt.skipped)} values that are no network parameters"
            + (f" ({', '.join((ignored + ckpt.skipped)[:3])}{' ...' if len(ignored) > 3 else ''})"))
    model.load_state_dict(state, strict=False)
    return model.eval()


def export_pruned(ckpt_path, index_path, out_path, hw: int, log: Log | None = None, mean=None, std=None) -> Path:
    """The checkpoint as ``end2end.onnx``: the scatter folded into conv3/bn3 (checked against the scattered
    network), exported, checked, compared with PyTorch."""
    log = log or Log(stage="export")
    model = build_pruned(ckpt_path, index_path, log)
    x = random_input(2, hw)
    scattered = torch_outputs(model, x)
    fold_scatter(model)
    folded = torch_outputs(model, x)
    fold_diff = float(np.abs(scattered - folded).max())
    log(f"scatter folded into conv3/bn3: max abs diff {fold_diff:.2e} against the scattered network "
        f"(tolerance {FOLD_TOLERANCE:g})")
    if not fold_diff <= FOLD_TOLERANCE:
        raise ExportError(f"the folded network differs from the scattered one by {fold_diff:.2e}")
    num_classes = int(model.end_point.out_features)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        torchscript_export(model, str(tmp), ONNX_OPSET, OUTPUT_NAME, DYNAMIC_AXES, hw=hw)
        add_metadata(tmp, {"mean_rgb_255": list(mean or ()), "std_rgb_255": list(std or ()),
                           "num_classes": str(num_classes), SOURCE_KEY: sha256_of(ckpt_path, index_path),
                           "source_checkpoint": str(Path(ckpt_path).resolve()),
                           "index": str(Path(index_path).resolve()), "exporter": "native (MindSpore checkpoint)",
                           "model": "ResNet50-0.65x (SCOP), scatter folded into conv3/bn3"})
        check_and_compare(tmp, out_path, x, folded, "PyTorch", log)
    graph = onnx.load(str(out_path)).graph
    assert "ScatterND" not in {n.op_type for n in graph.node}
    log_written(out_path, len(graph.node), "height,width", num_classes, log)
    return out_path
