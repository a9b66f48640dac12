"""Every intermediate tensor of a model run once, as the Ascend comparison dumps an OM's operators: ONNX models on
ONNX Runtime (each node's outputs made graph outputs), OpenVINO IRs on OpenVINO (each operation's outputs added as
model outputs). Integer tensors of a quantized model are dequantized with the scale and zero point that their
producer writes them with, so that they compare with the float model's. ``matched`` pairs a compared model's tensors
with the golden model's: by the names the quantizer and the compilers keep, and where a translated graph kept no
names, its convolutions and fully connected layers by their weights."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from poc.engines.onnxruntime import with_outputs
from poc.engines.openvino import PRECISION_KEY, openvino_core
from poc.formats.model_file import load_onnx
from poc.shared.errors import InputError, first_line

# where a quantized op's output scale and zero point are among its inputs (the others keep their input's)
_OUTPUT_QPARAMS = {"QuantizeLinear": (1, 2), "QLinearConv": (6, 7), "QLinearMatMul": (6, 7), "QLinearAdd": (6, 7),
                   "QLinearMul": (6, 7), "QLinearConcat": (0, 1), "QLinearGlobalAveragePool": (3, 4),
                   "QLinearAveragePool": (3, 4), "QLinearSigmoid": (3, 4), "QLinearLeakyRelu": (3, 4),
                   "QLinearSoftmax": (3, 4)}
_NAME_SUFFIXES = ("_quantized", "_DequantizeLinear_Output", "_QuantizeLinear_Output")  # ORT quantizer's renames
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "QLinearConv", "QLinearMatMul", "ConvInteger", "FusedConv")


@dataclass
class Tensor:
    name: str  # the tensor's name in its model
    op_type: str
    node: str  # the node (operation) that produced it
    output_index: int
    data: np.ndarray  # float values (dequantized where the tensor was integer)
    dtype: str  # the type the model computed it in
    quantized: bool = False
    weight: np.ndarray | None = None  # a convolution's or matrix multiply's constant weight, for the fallback match


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def onnx_tensors(path, feed: dict[str, np.ndarray]) -> list[Tensor]:
    """Run the ONNX model at ``path`` once on ``feed``; its node outputs in graph order, dequantized where integer.
    The graph runs as the file has it (no optimisation, so that every node is there to dump)."""
    model = load_onnx(path)
    inits = _initializers(model)
    constant = set(inits)  # a node that reads only constants computes a constant (a weight's DequantizeLinear)
    outputs = []
    for node in model.graph.node:
        if all(i in constant for i in node.input if i):
            constant.update(node.output)
        else:
            outputs += [(node, i, name) for i, name in enumerate(node.output) if name]
    backend = with_outputs(model, [name for _, _, name in outputs], ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    try:
        values = dict(zip(backend.outputs, backend.predict(feed), strict=True))
    except Exception as err:  # noqa: BLE001 - a model that does not run on this input is one line about it
        raise InputError(path, f"ONNX Runtime cannot run it on this input ({first_line(err)})") from None
    qparams: dict[str, tuple] = {}
    tensors = [Tensor(name, "Input", name, 0, np.asarray(value), str(np.asarray(value).dtype))
               for name, value in feed.items()]  # a graph input is a tensor to compare too (its quantization)
    for node, i, name in outputs:
        value = values[name]
        if node.op_type in _OUTPUT_QPARAMS and i == 0:
            s, z = _OUTPUT_QPARAMS[node.op_type]
            qparams[name] = (inits.get(node.input[s]), inits.get(node.input[z]) if len(node.input) > z else None)
        elif value.dtype.kind in "iu" and node.input and node.input[0] in qparams:  # MaxPool, Reshape on integers
            qparams[name] = qparams[node.input[0]]
        w_at = 3 if node.op_type.startswith("QLinear") else 1
        weight = inits.get(node.input[w_at]) if node.op_type in WEIGHTED_OPS and len(node.input) > w_at else None
        data, quantized = value, False
        if value.dtype.kind in "iu" and qparams.get(name, (None,))[0] is not None:
            scale, zero = qparams[name]
            data = (value.astype(np.float32) - (0 if zero is None else zero.astype(np.float32))) * scale
            quantized = True
        tensors.append(Tensor(name, node.op_type, node.name or name, i, data, str(value.dtype), quantized, weight))
    return tensors


def openvino_tensors(path, feed: dict[str, np.ndarray]) -> list[Tensor]:
    """Run the OpenVINO IR at ``path`` once on ``feed`` at the precision it asks for; every operation's outputs that
    carry a tensor name, in the order OpenVINO runs them."""
    core = openvino_core()
    try:
        model = core.read_model(str(path))
    except Exception:  # noqa: BLE001 - any load failure is one line about this file
        raise InputError(path, "OpenVINO cannot read it (not an OpenVINO IR)") from None
    precision = model.get_rt_info([PRECISION_KEY]).astype(str) if model.has_rt_info([PRECISION_KEY]) else "f32"
    ports, constant = [], set()
    for op in model.get_ordered_ops():
        sources = [i.get_source_output().get_node() for i in op.inputs()]
        if op.get_type_name() == "Constant" or (sources and all(id(n) in constant or n.get_type_name() == "Constant"
                                                                 for n in sources)):
            constant.add(id(op))  # a weight's dequantization: a constant, not a layer
            continue
        if op.get_type_name() in ("Parameter", "Result"):
            continue
        for i, out in enumerate(op.outputs()):
            if out.get_names():
                ports.append((op, i, sorted(out.get_names())[0]))
    model.add_outputs([op.output(i) for op, i, _ in ports])
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
    result = compiled.create_infer_request().infer(feed)
    by_name = {}
    for port, value in result.items():
        for name in port.get_names():
            by_name[name] = value
    dtype = {"bf16": "bfloat16", "f32": "float32"}.get(precision, precision)
    return [Tensor(name, op.get_type_name(), op.get_friendly_name(), i, np.asarray(by_name[name]),
                   dtype if by_name[name].dtype.kind == "f" else str(by_name[name].dtype))
            for op, i, name in ports if name in by_name]


def model_tensors(path, feed: dict[str, np.ndarray]) -> list[Tensor]:
    return openvino_tensors(path, feed) if str(path).lower().endswith(".xml") else onnx_tensors(path, feed)


def base_name(name: str) -> str:
    """A compared model's tensor name as the golden model has it: without the quantizer's suffixes."""
    for suffix in _NAME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def matched(target: list[Tensor], golden: list[Tensor]) -> list[tuple[Tensor, Tensor | None]]:
    """Each compared tensor with its golden counterpart (None: it has none). By name first; when no name is shared
    (a graph translated from another format names nothing alike), each weighted layer with the golden layer whose
    weights are closest (the same shape, within float rounding)."""
    by_name = {t.name: t for t in golden}
    pairs = [(t, by_name.get(t.name) or by_name.get(base_name(t.name))) for t in target]
    if any(g is not None and t.op_type != "Input" for t, g in pairs):
        # several tensors of one fused op carry the golden tensor's name (a Conv whose ReLU the quantizer folded
        # into its QuantizeLinear, then the Q and DQ): the last one holds what the golden tensor holds
        last = {id(g): k for k, (_, g) in enumerate(pairs) if g is not None}
        return [(t, g if g is None or last[id(g)] == k else None) for k, (t, g) in enumerate(pairs)]
    free = defaultdict(list)
    for g in golden:
        if g.weight is not None:
            free[g.weight.shape].append(g)
    out = []
    for t, _ in pairs:
        best = None
        if t.weight is not None and free.get(t.weight.shape):
            candidates = free[t.weight.shape]
            gaps = [float(np.abs(t.weight.astype(np.float32) - g.weight.astype(np.float32)).max()) for g in candidates]
            k = int(np.argmin(gaps))
            if gaps[k] <= 1e-3 * (float(np.abs(candidates[k].weight).max()) + 1e-12):
                best = candidates.pop(k)
        out.append((t, best))
    return out


def save_dumps(tensors: list[Tensor], folder: Path) -> None:
    """Each tensor as ``{node}.{output index}.npy`` (the names msit's ONNX dumps use), in a new folder."""
    folder.mkdir(parents=True)
    for t in tensors:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in t.node)
        np.save(folder / f"{safe}.{t.output_index}.npy", t.data)
