"""Stage 4, part 3: how far the INT8 model is from FP32 on test images, and which layer group costs the
most (the sensitivity table: one group quantized at a time, the rest in float).

The sensitivity rows run the QDQ models as they are (ONNX Runtime's basic optimisation level: QuantizeLinear /
DequantizeLinear around float kernels), the whole model included as the reference row. With the fused integer
kernels of a higher level the whole model skips some requantizations that a partly quantized one keeps, and how
much that helps depends on the CPU's kernels: rows measured that way compare the kernels, not the quantization.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from poc.config import BATCH_SIZE
from poc.engines.onnxruntime import OnnxRuntimeBackend
from poc.shared.aisbench import agreement
from poc.shared.bins import normalise
from poc.shared.errors import StageError
from poc.shared.progress import Log, versus

GROUPS = ("stem", "layer1", "layer2", "layer3", "layer4", "head")


@dataclass
class EvalSet:
    """Held-out images as the float model takes them, their labels (if known) and the FP32 outputs."""

    x: np.ndarray
    labels: np.ndarray | None
    fp32: np.ndarray


@dataclass
class Fidelity:
    images: int
    top1_agreement: float
    mean_cosine: float
    max_abs_diff: float
    fp32_top1: float | None = None
    int8_top1: float | None = None
    top1_drop: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def line(self) -> str:
        text = (f"fidelity FP32 vs INT8 on {self.images} test images: top-1 agreement "
                f"{self.top1_agreement:.2f} %, mean cosine {self.mean_cosine:.5f}")
        if self.fp32_top1 is not None:
            text += f"; top-1 INT8 vs FP32: {versus(self.int8_top1, self.fp32_top1)}"
        return text



def predict(model_path, x: np.ndarray, batch: int = BATCH_SIZE,
            level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> np.ndarray:
    backend = OnnxRuntimeBackend().load(model_path, level=level)
    name = backend.inputs[0].name
    return np.concatenate([backend.predict({name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def eval_set(fp32_model, images_hwc: np.ndarray, labels, mean, std) -> EvalSet:
    x = normalise(images_hwc.transpose(0, 3, 1, 2), mean, std)
    return EvalSet(x, labels, predict(fp32_model, x))


def compare(ref: np.ndarray, got: np.ndarray, labels) -> Fidelity:
    top1_agreement, mean_cosine = agreement(ref, got)
    f = Fidelity(images=int(len(ref)), top1_agreement=top1_agreement, mean_cosine=mean_cosine,
                 max_abs_diff=float(np.abs(ref - got).max()))
    if labels is not None:
        f.fp32_top1 = float((ref.argmax(1) == labels).mean() * 100)
        f.int8_top1 = float((got.argmax(1) == labels).mean() * 100)
        f.top1_drop = f.fp32_top1 - f.int8_top1
    return f


HEAD_STARTS = ("GlobalAveragePool", "ReduceMean")  # the global pooling, and everything after it, is the head


def layer_groups(model: onnx.ModelProto, conv_groups) -> dict[str, list[str]]:
    """Node names by layer group, in GROUPS order, from the graph's structure (names say nothing in a translated
    ``.ms``): the k-th convolution in the graph's (topological) order belongs to the group whose count in
    ``conv_groups`` (the model module's ``CONV_GROUPS``) covers k; the global pooling and what follows it is the
    head; any other node joins the latest group among the nodes that write its inputs (the stem when none)."""
    ends, total = {}, 0
    for group, count in conv_groups:
        total += count
        ends[group] = total
    order = {g: i for i, g in enumerate(GROUPS)}
    writer_group: dict[str, str] = {}
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    convs = 0
    for node in model.graph.node:
        inputs = [writer_group[i] for i in node.input if i in writer_group]
        if node.op_type in HEAD_STARTS or "head" in inputs:
            group = "head"
        elif node.op_type == "Conv":
            convs += 1
            group = next((g for g, end in ends.items() if convs <= end), None)
            if group is None:
                raise StageError(f"the graph has more than the {total} convolutions of its architecture")
        else:
            group = max(inputs, key=order.__getitem__, default="stem")
        groups[group].append(node.name)
        for out in node.output:
            writer_group[out] = group
    if convs != total:
        raise StageError(f"the graph has {convs} convolutions, its architecture {total}")
    return {g: nodes for g, nodes in groups.items() if nodes}


def sensitivity(model: onnx.ModelProto, conv_groups, whole: Path, quantize_only: Callable[[list[str], Path], Path],
                ev: EvalSet, work: Path, log: Log) -> list[dict]:
    """Quantize one layer group at a time with ``quantize_only(nodes, out_path)`` and compare each with FP32, beside
    the ``whole`` quantized model, all run as QDQ models (see the module's note)."""
    basic = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    groups = layer_groups(model, conv_groups)
    rows = [{"group": "all", "nodes": len(model.graph.node),
             **compare(ev.fp32, predict(whole, ev.x, level=basic), ev.labels).as_dict()}]
    for group, nodes in log.bar(list(groups.items()), desc="sensitivity", unit="group"):
        model_path = quantize_only(nodes, work / f"{group}.onnx")
        rows.append({"group": group, "nodes": len(nodes),
                     **compare(ev.fp32, predict(model_path, ev.x, level=basic), ev.labels).as_dict()})
    log("sensitivity (one group quantized at a time, QDQ models without kernel fusion; 'all' = every group):")
    log(f"  {'group':<7} {'nodes':>5} {'top-1 agree':>11} {'cosine':>8}"
        + ("  int8 top-1" if ev.labels is not None else ""))
    for r in rows:
        log(f"  {r['group']:<7} {r['nodes']:>5} {r['top1_agreement']:>10.2f}% {r['mean_cosine']:>8.5f}"
            + (f"  {r['int8_top1']:>9.2f}%" if ev.labels is not None else ""))
    return rows
