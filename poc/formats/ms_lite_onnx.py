"""MindSpore Lite graphs (``poc.formats.ms_lite``) to the ``end2end.onnx`` contract, and an independent op-by-op
numpy run of the Lite graph, what the translation is verified against: read (``ms_lite.read_ms``) -> translate
(``to_onnx``) -> verify (``contract_output``, the run with the contract's softmax). The other direction, the Lite
converters' emulation that makes the demo's and the tests' ``.ms`` files, is ``poc.demo.lite_converter``.

Layouts: a Lite graph runs NHWC with format nodes between; the ONNX graph keeps every 4-D tensor NCHW, so format
nodes become no-ops and the NHWC input becomes the contract's NCHW ``input``. A batch-1 reshape is translated only
where it is a flatten of a 1x1 map (then it is batch-safe); anything else is refused with its name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from poc.config import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME
from poc.formats.ms_lite import (
    NO_ACTIVATION,
    RELU,
    RELU6,
    SIGMOID,
    LiteGraph,
    LiteNode,
    ends_in_softmax,
    topological_order,
)
from poc.shared.errors import InputError

NHWC_TO_NCHW, NCHW_TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
_ACTIVATIONS = {NO_ACTIVATION: None, RELU: "Relu", RELU6: "Relu6", SIGMOID: "Sigmoid"}

# Bounds a file's declared sizes are held to before anything is allocated (at batch 1). The largest tensor of the
# three models is 1x112x112x64 (0.8 M values); a convolution's patch matrix at most a few M.
MAX_INPUT_HW = 1024  # when the caller names no profile; a profile's own input size bounds it otherwise
MAX_TENSOR_VALUES = 1 << 24
MAX_PATCH_VALUES = 1 << 25
MAX_STRIDE = 16
BATCH = "N"  # the batch dimension in an inferred shape (and in a shape computed from it)

# (fewest, most) inputs of each op
_ARITY = {"Conv2D": (2, 3), "Activation": (1, 1), "Add": (2, 2), "Pooling": (1, 1), "Nchw2Nhwc": (1, 1),
          "Nhwc2Nchw": (1, 1), "Transpose": (1, 1), "Reshape": (1, 2), "Flatten": (1, 1), "MatMul": (2, 2),
          "FullConnection": (2, 3), "BiasAdd": (2, 2), "SoftMax": (1, 1), "Concat": (1, 64), "Shape": (1, 1),
          "Gather": (2, 2), "Unsqueeze": (1, 1)}
_SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Concat")  # the ops of a computed reshape target


def _refuse(graph: LiteGraph, node: LiteNode, what: str):
    raise InputError(graph.path, f"node {node.name} ({node.op}): {what}; not translated")


def _activation(graph, node, code: int):
    if code not in _ACTIVATIONS:
        _refuse(graph, node, f"activation type {code}")
    return _ACTIVATIONS[code]


def _perm(graph: LiteGraph, node: LiteNode) -> list[int]:
    if node.op == "Nchw2Nhwc":
        return NCHW_TO_NHWC
    if node.op == "Nhwc2Nchw":
        return NHWC_TO_NCHW
    perm = node.fields["perm"] or []
    if perm not in (NCHW_TO_NHWC, NHWC_TO_NCHW):
        _refuse(graph, node, f"perm {perm[:8]} (only the NHWC <-> NCHW format changes are translated)")
    return perm


def _conv_pads(f: dict) -> list[int]:
    """[up, left, down, right]: explicit pads (NOTSET, CAFFE), none for VALID."""
    return [0, 0, 0, 0] if f["padMode"] == 2 else [f["padUp"], f["padLeft"], f["padDown"], f["padRight"]]


# --- shape inference: every field checked, every size bounded, before a byte is allocated ------------------------

@dataclass(frozen=True)
class TensorInfo:
    shape: tuple  # dims at batch 1, with BATCH where the batch is
    kind: str  # "f": float, "i": integer (a shape computation)
    value: tuple | None = None  # an integer tensor's values, flattened (BATCH where they are the batch size)


def _values(shape: tuple) -> int:
    return math.prod(1 if d == BATCH else d for d in shape)


def infer(graph: LiteGraph, max_hw: int | None = None) -> dict[int, TensorInfo]:
    """Every tensor's shape and kind, and the values of the integer tensors a reshape target is computed from, in
    Lite semantics (4-D activations NHWC unless a format node says otherwise). Tensors the converter left without
    dims or data type get theirs from their producer. Anything this translation cannot do exactly, or a size beyond
    the bounds above (the input beyond ``max_hw``), is an InputError naming the node."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise InputError(graph.path, f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs: a classifier has "
                                     "one of each")
    dims = graph.tensors[graph.inputs[0]].dims
    if len(dims) != 4 or dims[3] != 3 or dims[0] != 1 or min(dims) < 1:
        raise InputError(graph.path, f"input tensor dims {dims[:8]}: expected NHWC [1,H,W,3]")
    limit = max_hw or MAX_INPUT_HW
    if max(dims[1], dims[2]) > limit:
        raise InputError(graph.path, f"input tensor dims {dims}: {dims[1]}x{dims[2]} is larger than "
                                     f"{limit}x{limit}" + (" (the profile's input)" if max_hw else ""))
    info = {graph.inputs[0]: TensorInfo((BATCH, dims[1], dims[2], 3), "f")}
    for t in graph.tensors:
        if t.data is not None:
            kind = "f" if t.data.dtype.kind == "f" else "i"
            value = tuple(int(v) for v in t.data.ravel()) if kind == "i" and t.data.size <= 64 else None
            info[t.index] = TensorInfo(tuple(t.data.shape), kind, value)
    for node in topological_order(graph):
        lo, hi = _ARITY[node.op]
        if not lo <= len(node.inputs) <= hi or len(node.outputs) != 1:
            _refuse(graph, node, f"{len(node.inputs)} inputs and {len(node.outputs)} outputs")
        out = _infer_node(graph, node, [info[i] for i in node.inputs])
        if _values(out.shape) > MAX_TENSOR_VALUES:
            _refuse(graph, node, f"its output {list(out.shape)} holds more than {MAX_TENSOR_VALUES} values")
        info[node.outputs[0]] = out
    result = info[graph.outputs[0]]
    if result.kind != "f" or len(result.shape) != 2 or result.shape[0] != BATCH:
        raise InputError(graph.path, f"output shape {list(result.shape)}: a classifier outputs [1, classes]")
    return info


def _infer_node(graph: LiteGraph, node: LiteNode, ins: list[TensorInfo]) -> TensorInfo:
    f, op = node.fields, node.op

    def need(ok: bool, what: str):
        if not ok:
            _refuse(graph, node, what)

    def const(i: int, kind: str, rank: int) -> np.ndarray:
        data = graph.tensors[node.inputs[i]].data
        need(data is not None and ins[i].kind == kind and data.ndim == rank,
             f"input {i} is not a constant {rank}-D {'float' if kind == 'f' else 'integer'} tensor")
        return data

    if op in _SHAPE_OPS and all(x.kind == "i" for x in ins) or op == "Shape":
        return _infer_shape_op(graph, node, ins, need)
    need(ins[0].kind == "f", "a float input expected")
    x = ins[0].shape
    if op == "Conv2D":
        need(len(x) == 4, f"input {list(x)} is not 4-D")
        w = const(1, "f", 4)
        k, kh, kw, cin = w.shape
        need(cin == x[3] and k > 0, f"weight {list(w.shape)} (KHWC) does not fit an input of {x[3]} channels")
        need(f["kernelH"] in (0, kh) and f["kernelW"] in (0, kw), "kernel fields disagree with the weight")
        need((f["group"] or 1) == 1 and (f["dilateH"] or 1) == 1 and (f["dilateW"] or 1) == 1,
             "a grouped or dilated convolution")
        need(f["padMode"] in (0, 2, 4), f"padMode {f['padMode']} (explicit pads are translated)")
        sh, sw = f["strideH"] or 1, f["strideW"] or 1
        need(1 <= sh <= MAX_STRIDE and 1 <= sw <= MAX_STRIDE, f"strides {sh}, {sw}")
        pu, pl, pd, pr = _conv_pads(f)
        need(0 <= pu < kh and 0 <= pd < kh and 0 <= pl < kw and 0 <= pr < kw,
             f"pads {[pu, pl, pd, pr]} for a {kh}x{kw} kernel")
        if len(node.inputs) > 2:
            need(const(2, "f", 1).shape == (k,), "its bias does not have one value per output channel")
        _activation(graph, node, f["activationType"])
        ho, wo = (x[1] + pu + pd - kh) // sh + 1, (x[2] + pl + pr - kw) // sw + 1
        need(ho >= 1 and wo >= 1, f"a {kh}x{kw} kernel does not fit a {x[1]}x{x[2]} input")
        need(ho * wo * kh * kw * cin <= MAX_PATCH_VALUES, "its patches exceed the size bound")
        return TensorInfo((x[0], ho, wo, k), "f")
    if op == "Activation":
        need(_activation(graph, node, f["type"]) is not None, "activation type 0")
        return TensorInfo(x, "f")
    if op == "Add":
        _activation(graph, node, f["activationType"])
        need(ins[1].kind == "f" and ins[1].shape == x, f"inputs of shapes {list(x)} and {list(ins[1].shape)}")
        return TensorInfo(x, "f")
    if op == "Pooling":
        need(f["global"] and f["poolingMode"] == 1 and len(x) == 4, "only global average pooling is translated")
        return TensorInfo((x[0], 1, 1, x[3]), "f")
    if op in ("Nchw2Nhwc", "Nhwc2Nchw", "Transpose"):
        need(len(x) == 4, f"input {list(x)} is not 4-D")
        return TensorInfo(tuple(x[p] for p in _perm(graph, node)), "f")
    if op in ("Reshape", "Flatten"):
        need(len(x) >= 2, f"input {list(x)}")
        if len(x) == 4 and not (x[1] == 1 and x[2] == 1 or x[2] == 1 and x[3] == 1):
            _refuse(graph, node, f"reshape of a {list(x)} map (only the flatten of a 1x1 map is batch-safe)")
        rest = _values(x[1:])
        if op == "Reshape":
            if len(node.inputs) > 1:  # computed: its first value must be the batch read from a shape
                need(ins[1].kind == "i" and ins[1].value is not None, "its shape input is not a shape computation")
                target, batch = list(ins[1].value), (BATCH,)
            else:  # an attribute: 0 copies the batch; 1 is the batch-1 export's literal
                need(f["shape"] is not None, "no shape")
                target, batch = list(f["shape"]), (0, 1)
            need(x[0] == BATCH and len(target) == 2 and target[0] in batch and target[1] in (-1, rest),
                 f"target shape {['batch' if v == BATCH else v for v in target[:8]]} is not a flatten "
                 "[batch, -1]")
        return TensorInfo((x[0], rest), "f")
    if op in ("MatMul", "FullConnection"):
        need(len(x) == 2, f"input {list(x)} is not 2-D")
        w = const(1, "f", 2)
        if op == "MatMul":
            need(not f["transposeA"], "transposeA")
        else:
            need(not f["useAxis"] or f["axis"] == 1, f"axis {f['axis']}")
            _activation(graph, node, f["activationType"])
        out_in = w.shape if op == "FullConnection" or f["transposeB"] else w.shape[::-1]
        need(out_in[1] == x[1], f"weight {list(w.shape)} does not fit {x[1]} inputs")
        if op == "FullConnection" and len(node.inputs) > 2:
            need(const(2, "f", 1).shape == (out_in[0],), "its bias does not have one value per output")
        return TensorInfo((x[0], out_in[0]), "f")
    if op == "BiasAdd":
        need(const(1, "f", 1).shape == (x[-1],), "its bias does not fit the last axis")
        return TensorInfo(x, "f")
    if op == "SoftMax":
        need(len(x) == 2 and f["axis"] in (1, -1), f"softmax over axis {f['axis']} of a {len(x)}-D tensor")
        return TensorInfo(x, "f")
    if op == "Concat":
        need(all(i.kind == "f" and len(i.shape) == len(x) for i in ins), "inputs of different kinds or ranks")
        need(-len(x) <= f["axis"] < len(x), f"axis {f['axis']}")
        axis = f["axis"] % len(x)
        need(axis != 0 and all(i.shape[:axis] + i.shape[axis + 1:] == x[:axis] + x[axis + 1:] for i in ins),
             "inputs whose shapes do not concatenate")
        return TensorInfo(x[:axis] + (sum(i.shape[axis] for i in ins),) + x[axis + 1:], "f")
    _refuse(graph, node, "a float input where a shape computation was expected")


def _infer_shape_op(graph, node, ins, need) -> TensorInfo:
    """Shape, Gather, Unsqueeze and Concat on integer vectors: the values of a computed reshape target."""
    f, op = node.fields, node.op
    if op == "Shape":
        return TensorInfo((len(ins[0].shape),), "i", tuple(ins[0].shape))
    need(all(i.value is not None for i in ins), "integer inputs whose values are not known")
    if op == "Gather":
        params, idx = ins
        need(len(params.shape) == 1 and f["axis"] in (0, -1) and f["batchDims"] == 0 and len(idx.shape) <= 1,
             f"a gather over axis {f['axis']} of a {len(params.shape)}-D tensor")
        n = params.shape[0]
        need(all(-n <= i < n for i in idx.value), f"indices {list(idx.value)[:4]} outside a {n}-vector")
        return TensorInfo(idx.shape, "i", tuple(params.value[i] for i in idx.value))
    if op == "Unsqueeze":
        axes = f["axis"] or []
        rank = len(ins[0].shape) + len(axes)
        need(len(set(a % rank for a in axes)) == len(axes) and all(-rank <= a < rank for a in axes) and rank <= 1,
             f"axes {axes[:8]} of a {len(ins[0].shape)}-D tensor")
        return TensorInfo((_values(ins[0].shape),) if rank else (), "i", ins[0].value)
    need(all(len(i.shape) == 1 for i in ins) and f["axis"] in (0, -1), "a concat of integer tensors that are "
                                                                       "not vectors")
    values = tuple(v for i in ins for v in i.value)
    return TensorInfo((len(values),), "i", values)


# --- the independent numpy run (Lite semantics: 4-D activations NHWC unless a format node says otherwise) -----

def _act(x: np.ndarray, kind: str | None) -> np.ndarray:
    if kind == "Relu":
        return np.maximum(x, 0)
    if kind == "Relu6":
        return np.clip(x, 0, 6)
    if kind == "Sigmoid":
        return 1 / (1 + np.exp(-x))
    return x


def _conv_nhwc(x, w_khwc, bias, f):
    kh, kw = w_khwc.shape[1], w_khwc.shape[2]
    sh, sw = f["strideH"] or 1, f["strideW"] or 1
    pu, pl, pd, pr = _conv_pads(f)
    xp = np.pad(x, ((0, 0), (pu, pd), (pl, pr), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # N,Ho,Wo,C,kh,kw
    n, ho, wo = patches.shape[:3]
    cols = patches.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, kh * kw * x.shape[3])
    y = cols @ w_khwc.reshape(w_khwc.shape[0], -1).T
    if bias is not None:
        y = y + bias
    return y.reshape(n, ho, wo, -1)


def _reshape(x: np.ndarray, target) -> np.ndarray:
    target = [x.shape[i] if v == 0 else int(v) for i, v in enumerate(target)]  # 0 copies the input's dim
    return x.reshape(target)


def evaluate(graph: LiteGraph, x_nhwc: np.ndarray, keep=()) -> dict[int, np.ndarray]:
    """The graph's output tensor (and those in ``keep``) for the input ``x_nhwc`` (float32 [1,H,W,C], the Lite
    input), computed in float64 op by op with numpy, as the Lite runtime defines the ops. The graph is checked
    (``infer``) first, and a tensor is dropped once its last reader has run."""
    infer(graph)
    order = topological_order(graph)
    last_use = {}
    for step, node in enumerate(order):
        for t in node.inputs:
            last_use[t] = step
    wanted = set(graph.outputs) | set(keep)
    consts = {t.index: t.data for t in graph.tensors if t.data is not None}
    values = {graph.inputs[0]: x_nhwc.astype(np.float64)}
    for step, node in enumerate(order):
        f = node.fields
        ins = [values[i] if i in values else consts[i].astype(np.float64 if consts[i].dtype.kind == "f" else np.int64)
               for i in node.inputs]
        if node.op == "Conv2D":
            y = _act(_conv_nhwc(ins[0], ins[1], ins[2] if len(ins) > 2 else None, f), _ACTIVATIONS[f["activationType"]])
        elif node.op == "Activation":
            y = _act(ins[0], _ACTIVATIONS[f["type"]])
        elif node.op == "Add":
            y = _act(ins[0] + ins[1], _ACTIVATIONS[f["activationType"]])
        elif node.op == "Pooling":
            y = ins[0].mean(axis=(1, 2), keepdims=True)  # global average, NHWC
        elif node.op in ("Nchw2Nhwc", "Nhwc2Nchw", "Transpose"):
            y = np.transpose(ins[0], _perm(graph, node))
        elif node.op == "Flatten":
            y = ins[0].reshape(ins[0].shape[0], -1)
        elif node.op == "Reshape":
            y = _reshape(ins[0], ins[1] if len(ins) > 1 else f["shape"])
        elif node.op in ("MatMul", "FullConnection"):
            w = ins[1] if node.op == "FullConnection" or f["transposeB"] else ins[1].T
            y = ins[0] @ w.T
            if node.op == "FullConnection":
                y = _act(y + ins[2] if len(ins) > 2 else y, _ACTIVATIONS[f["activationType"]])
        elif node.op == "BiasAdd":
            y = ins[0] + ins[1]
        elif node.op == "SoftMax":
            z = np.exp(ins[0] - ins[0].max(axis=f["axis"], keepdims=True))
            y = z / z.sum(axis=f["axis"], keepdims=True)
        elif node.op == "Concat":
            y = np.concatenate([np.atleast_1d(i) for i in ins], axis=f["axis"])
        elif node.op == "Shape":
            y = np.array(ins[0].shape, np.int64)
        elif node.op == "Gather":
            y = np.take(ins[0], ins[1], axis=f["axis"])
        else:  # Unsqueeze
            y = ins[0]
            for axis in sorted(a % (ins[0].ndim + len(f["axis"])) for a in f["axis"]):
                y = np.expand_dims(y, axis)
        values[node.outputs[0]] = y
        for t in node.inputs:
            if last_use[t] == step and t not in wanted:
                values.pop(t, None)
    return {t: v for t, v in values.items() if t in wanted}


def contract_output(graph: LiteGraph, x_nchw: np.ndarray) -> np.ndarray:
    """What ``end2end.onnx`` must output for one image ``x_nchw`` (float32 [1,3,H,W], normalised): the graph's own
    output, run op by op, with the contract's softmax after it when the file outputs logits (as ``to_onnx`` adds it)."""
    y = evaluate(graph, x_nchw.transpose(0, 2, 3, 1))[graph.outputs[0]][0]
    if ends_in_softmax(graph):
        return y
    z = np.exp(y - y.max())
    return z / z.sum()


# --- Lite -> ONNX ----------------------------------------------------------------------------------------------

def to_onnx(graph: LiteGraph, max_hw: int | None = None) -> onnx.ModelProto:
    """The Lite graph as ``end2end.onnx``: opset 11, input ``input`` float32 [batch,3,H,W] (normalised NCHW),
    output ``output`` = softmax [batch,classes], dynamic batch. A computed reshape target (Shape, Gather, Unsqueeze,
    Concat) is folded with its Reshape into one batch-safe Flatten."""
    info = infer(graph, max_hw)
    height, width = info[graph.inputs[0]].shape[1:3]
    names = {graph.inputs[0]: INPUT_NAME}
    inits, nodes = [], []

    def name_of(t: int) -> str:
        if t not in names:  # a constant (infer has checked that every other input is written before it is read)
            names[t] = f"c{t}"
            inits.append(numpy_helper.from_array(graph.tensors[t].data.astype(np.float32), names[t]))
        return names[t]

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def emit(op, inputs, out, **attrs):
        nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{len(nodes)}", **attrs))
        return out

    def activation(x, kind, out):
        if kind is None:
            return x
        if kind == "Relu6":
            return emit("Clip", [x, const(f"{out}_lo", np.float32(0)), const(f"{out}_hi", np.float32(6))], out)
        return emit(kind, [x], out)

    for node in topological_order(graph):
        f, out = node.fields, f"t{node.outputs[0]}"
        if info[node.outputs[0]].kind == "i":
            continue  # part of a reshape target: folded into the Flatten below
        if node.op == "Conv2D":
            w = graph.tensors[node.inputs[1]].data.astype(np.float32).transpose(0, 3, 1, 2)  # KHWC -> OIHW
            inputs = [name_of(node.inputs[0]), const(f"w{node.inputs[1]}", w)]
            if len(node.inputs) > 2:  # the converter's hasBias is unreliable: the input count decides
                inputs.append(name_of(node.inputs[2]))
            kind = _ACTIVATIONS[f["activationType"]]
            conv = emit("Conv", inputs, out if kind is None else f"{out}_conv", kernel_shape=list(w.shape[2:]),
                        strides=[f["strideH"] or 1, f["strideW"] or 1], pads=_conv_pads(f))
            activation(conv, kind, out)
        elif node.op == "Activation":
            activation(name_of(node.inputs[0]), _ACTIVATIONS[f["type"]], out)
        elif node.op == "Add":
            kind = _ACTIVATIONS[f["activationType"]]
            a = emit("Add", [name_of(node.inputs[0]), name_of(node.inputs[1])], out if kind is None else f"{out}_add")
            activation(a, kind, out)
        elif node.op == "Pooling":
            emit("GlobalAveragePool", [name_of(node.inputs[0])], out)
        elif node.op in ("Nchw2Nhwc", "Nhwc2Nchw", "Transpose"):
            names[node.outputs[0]] = name_of(node.inputs[0])  # ONNX keeps NCHW: a format change is a no-op
            continue
        elif node.op in ("Reshape", "Flatten"):
            emit("Flatten", [name_of(node.inputs[0])], out, axis=1)  # infer() has checked that it is a flatten
        elif node.op in ("MatMul", "FullConnection"):
            wmat = graph.tensors[node.inputs[1]].data.astype(np.float32)
            wmat = wmat if node.op == "FullConnection" or f["transposeB"] else wmat.T  # -> [out, in]
            inputs = [name_of(node.inputs[0]), const(f"w{node.inputs[1]}", wmat)]
            if node.op == "FullConnection" and len(node.inputs) > 2:
                inputs.append(name_of(node.inputs[2]))
            kind = _ACTIVATIONS[f["activationType"]] if node.op == "FullConnection" else None
            g = emit("Gemm", inputs, out if kind is None else f"{out}_gemm", transB=1)
            activation(g, kind, out)
        elif node.op == "BiasAdd":
            emit("Add", [name_of(node.inputs[0]), name_of(node.inputs[1])], out)
        elif node.op == "SoftMax":
            emit("Softmax", [name_of(node.inputs[0])], out, axis=1)
        elif node.op == "Concat":
            axis = f["axis"] % len(info[node.inputs[0]].shape)
            if len(info[node.inputs[0]].shape) == 4:
                axis = {1: 2, 2: 3, 3: 1}[axis]  # NHWC axis -> NCHW axis
            emit("Concat", [name_of(i) for i in node.inputs], out, axis=axis)
        names[node.outputs[0]] = out

    last = names[graph.outputs[0]]
    classes = info[graph.outputs[0]].shape[1]
    if ends_in_softmax(graph):
        next(n for n in nodes if n.output[0] == last).output[0] = OUTPUT_NAME
    else:  # the file outputs logits; the contract's output is the softmax
        emit("Softmax", [last], OUTPUT_NAME, axis=1)
    graph_proto = helper.make_graph(
        nodes, "ms_lite", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, height, width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", classes])], inits)
    model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="poc.ms_onnx")
    model.ir_version = 6
    return model
