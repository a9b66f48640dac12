"""MindSpore Lite graphs (``poc.ms_lite``) to the ``end2end.onnx`` contract, an independent op-by-op numpy run of
the Lite graph (what the translation is verified against), and, for tests and the demo, the other direction as the
Lite 1.0 / 1.1 converters did it from an ONNX export (``MODELS.md``: BN folded into the convolutions, ReLU fused
where the converter fuses it, KHWC weights, an NHWC input, format nodes of either generation, either head form).

Layouts: a Lite graph runs NHWC with format nodes between; the ONNX graph keeps every 4-D tensor NCHW, so format
nodes become no-ops and the NHWC input becomes the contract's NCHW ``input``. A batch-1 reshape is translated only
where it is a flatten of a 1x1 map (then it is batch-safe); anything else is refused with its name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .config import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME
from .errors import InputError
from .ms_lite import (
    NO_ACTIVATION,
    PRIMITIVE_TYPES,
    PRIMITIVES,
    RELU,
    RELU6,
    SIGMOID,
    LiteGraph,
    LiteNode,
    LiteTensor,
    topological_order,
)

NHWC_TO_NCHW, NCHW_TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]
_ACTIVATIONS = {NO_ACTIVATION: None, RELU: "Relu", RELU6: "Relu6", SIGMOID: "Sigmoid"}


def _refuse(graph: LiteGraph, node: LiteNode, what: str):
    raise InputError(graph.path, f"node {node.name} ({node.op}): {what}; not translated")


def _activation(graph, node, code: int):
    if code not in _ACTIVATIONS:
        _refuse(graph, node, f"activation type {code}")
    return _ACTIVATIONS[code]


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
    dh, dw = f["dilateH"] or 1, f["dilateW"] or 1
    if (dh, dw) != (1, 1) or (f["group"] or 1) != 1:
        raise ValueError("dilated or grouped convolution")
    xp = np.pad(x, ((0, 0), (f["padUp"], f["padDown"]), (f["padLeft"], f["padRight"]), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # N,Ho,Wo,C,kh,kw
    n, ho, wo = patches.shape[:3]
    cols = patches.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, kh * kw * x.shape[3])
    y = cols @ w_khwc.reshape(w_khwc.shape[0], -1).T
    if bias is not None:
        y = y + bias
    return y.reshape(n, ho, wo, -1)


def evaluate(graph: LiteGraph, x_nhwc: np.ndarray) -> dict[int, np.ndarray]:
    """Every tensor of the graph for the input ``x_nhwc`` (float32 [1,H,W,C], the Lite input), computed in float64
    op by op with numpy, as the Lite runtime defines the ops."""
    values = {t.index: t.data.astype(np.float64) for t in graph.tensors if t.data is not None and t.data.dtype.kind == "f"}
    values.update({t.index: t.data for t in graph.tensors if t.data is not None and t.data.dtype.kind != "f"})
    values[graph.inputs[0]] = x_nhwc.astype(np.float64)
    for node in topological_order(graph):
        f, ins = node.fields, [values[i] for i in node.inputs]
        try:
            if node.op == "Conv2D":
                y = _act(_conv_nhwc(ins[0], ins[1], ins[2] if len(ins) > 2 else None, f),
                         _activation(graph, node, f["activationType"]))
            elif node.op == "Activation":
                y = _act(ins[0], _activation(graph, node, f["type"]))
            elif node.op == "Add":
                y = _act(ins[0] + ins[1], _activation(graph, node, f["activationType"]))
            elif node.op == "Pooling":
                if not f["global"] or f["poolingMode"] != 1:
                    _refuse(graph, node, "only global average pooling is translated")
                y = ins[0].mean(axis=(1, 2), keepdims=True)  # Lite pools NHWC
            elif node.op in ("Nchw2Nhwc", "Nhwc2Nchw", "Transpose"):
                y = np.transpose(ins[0], _perm(graph, node))
            elif node.op in ("Reshape", "Flatten"):
                y = ins[0].reshape(ins[0].shape[0], -1)
            elif node.op in ("MatMul", "FullConnection"):
                w = ins[1] if node.op == "FullConnection" or f["transposeB"] else ins[1].T
                y = ins[0] @ w.T
                if node.op == "FullConnection" and len(ins) > 2:
                    y = y + ins[2]
                if node.op == "FullConnection":
                    y = _act(y, _activation(graph, node, f["activationType"]))
            elif node.op == "BiasAdd":
                y = ins[0] + ins[1]
            elif node.op == "SoftMax":
                z = ins[0] - ins[0].max(axis=f["axis"], keepdims=True)
                y = np.exp(z) / np.exp(z).sum(axis=f["axis"], keepdims=True)
            elif node.op == "Concat":
                y = np.concatenate(ins, axis=f["axis"])
            else:
                _refuse(graph, node, "not evaluated")
        except (ValueError, IndexError) as err:
            _refuse(graph, node, f"cannot be evaluated ({err})")
        values[node.outputs[0]] = y
    return values


def _perm(graph: LiteGraph, node: LiteNode) -> list[int]:
    if node.op == "Nchw2Nhwc":
        return NCHW_TO_NHWC
    if node.op == "Nhwc2Nchw":
        return NHWC_TO_NCHW
    perm = node.fields["perm"] or []
    if perm not in (NCHW_TO_NHWC, NHWC_TO_NCHW):
        _refuse(graph, node, f"perm {perm} (only the NHWC <-> NCHW format changes are translated)")
    return perm


# --- Lite -> ONNX ----------------------------------------------------------------------------------------------

def to_onnx(graph: LiteGraph, num_classes_hint: int | None = None) -> onnx.ModelProto:
    """The Lite graph as ``end2end.onnx``: opset 11, input ``input`` float32 [batch,3,H,W] (normalised NCHW),
    output ``output`` = softmax [batch,classes], dynamic batch."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise InputError(graph.path, f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs: a classifier has "
                                     "one of each")
    t_in = graph.tensors[graph.inputs[0]]
    if len(t_in.dims) != 4 or t_in.dims[3] != 3:
        raise InputError(graph.path, f"input tensor dims {t_in.dims}: expected NHWC [1,H,W,3]")
    height, width = t_in.dims[1], t_in.dims[2]
    shapes = {k: v.shape for k, v in evaluate(graph, np.zeros((1, height, width, 3), np.float32)).items()}  # batch 1
    names = {graph.inputs[0]: INPUT_NAME}
    inits, nodes = [], []

    def name_of(t: int) -> str:
        if t not in names:
            tensor = graph.tensors[t]
            if tensor.data is None:
                raise InputError(graph.path, f"tensor {t} is read before it is written")
            names[t] = f"c{t}"
            inits.append(numpy_helper.from_array(tensor.data.astype(np.float32), names[t]))
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
        if node.op == "Conv2D":
            if f["padMode"] not in (0, 2, 4):
                _refuse(graph, node, f"padMode {f['padMode']} (explicit pads are translated)")
            if (f["group"] or 1) != 1 or (f["dilateH"] or 1) != 1 or (f["dilateW"] or 1) != 1:
                _refuse(graph, node, "a grouped or dilated convolution")
            wt = graph.tensors[node.inputs[1]]
            if wt.data is None or wt.data.ndim != 4:
                _refuse(graph, node, "its weight is not a constant 4-D tensor")
            w = wt.data.astype(np.float32).transpose(0, 3, 1, 2)  # KHWC -> OIHW
            inputs = [names.get(node.inputs[0]) or name_of(node.inputs[0]), const(f"w{node.inputs[1]}", w)]
            if len(node.inputs) > 2:  # the converter's hasBias is unreliable: the input count decides
                inputs.append(name_of(node.inputs[2]))
            pads = [0, 0, 0, 0] if f["padMode"] == 2 else [f["padUp"], f["padLeft"], f["padDown"], f["padRight"]]
            kind = _activation(graph, node, f["activationType"])
            conv = emit("Conv", inputs, out if kind is None else f"{out}_conv", kernel_shape=list(w.shape[2:]),
                        strides=[f["strideH"] or 1, f["strideW"] or 1], pads=pads)
            activation(conv, kind, out)
        elif node.op == "Activation":
            activation(names[node.inputs[0]], _activation(graph, node, f["type"]) or _refuse(graph, node, "type 0"),
                       out)
        elif node.op == "Add":
            kind = _activation(graph, node, f["activationType"])
            a = emit("Add", [name_of(node.inputs[0]), name_of(node.inputs[1])], out if kind is None else f"{out}_add")
            activation(a, kind, out)
        elif node.op == "Pooling":
            if not f["global"] or f["poolingMode"] != 1:
                _refuse(graph, node, "only global average pooling is translated")
            emit("GlobalAveragePool", [names[node.inputs[0]]], out)
        elif node.op in ("Nchw2Nhwc", "Nhwc2Nchw", "Transpose"):
            _perm(graph, node)
            names[node.outputs[0]] = names[node.inputs[0]]  # ONNX keeps NCHW: a format change is a no-op
            continue
        elif node.op in ("Reshape", "Flatten"):
            src = shapes[node.inputs[0]]
            if len(src) == 4 and not (src[1] == 1 and src[2] == 1 or src[2] == 1 and src[3] == 1):
                _refuse(graph, node, f"reshape of a {list(src)} map (only the flatten of a 1x1 map is batch-safe)")
            emit("Flatten", [names[node.inputs[0]]], out, axis=1)
        elif node.op in ("MatMul", "FullConnection"):
            if node.op == "MatMul" and f["transposeA"]:
                _refuse(graph, node, "transposeA")
            if node.op == "FullConnection" and f["useAxis"] and f["axis"] != 1:
                _refuse(graph, node, f"axis {f['axis']}")
            wt = graph.tensors[node.inputs[1]]
            if wt.data is None:
                _refuse(graph, node, "its weight is not a constant")
            wmat = wt.data.astype(np.float32)
            wmat = wmat if node.op == "FullConnection" or f["transposeB"] else wmat.T  # -> [out, in]
            inputs = [names[node.inputs[0]], const(f"w{node.inputs[1]}", wmat)]
            if node.op == "FullConnection" and len(node.inputs) > 2:
                inputs.append(name_of(node.inputs[2]))
            kind = _activation(graph, node, f["activationType"]) if node.op == "FullConnection" else None
            g = emit("Gemm", inputs, out if kind is None else f"{out}_gemm", transB=1)
            activation(g, kind, out)
        elif node.op == "BiasAdd":
            emit("Add", [names[node.inputs[0]], name_of(node.inputs[1])], out)
        elif node.op == "SoftMax":
            if len(shapes[node.inputs[0]]) != 2 or f["axis"] not in (1, -1):
                _refuse(graph, node, f"softmax over axis {f['axis']} of a {len(shapes[node.inputs[0]])}-D tensor")
            emit("Softmax", [names[node.inputs[0]]], out, axis=1)
        elif node.op == "Concat":
            rank = len(shapes[node.inputs[0]])
            axis = f["axis"] % rank
            if rank == 4:
                axis = {0: 0, 1: 2, 2: 3, 3: 1}[axis]  # NHWC axis -> NCHW axis
            emit("Concat", [name_of(i) for i in node.inputs], out, axis=axis)
        else:
            _refuse(graph, node, "not translated")
        names[node.outputs[0]] = out

    last = names[graph.outputs[0]]
    out_shape = shapes[graph.outputs[0]]
    if len(out_shape) != 2:
        raise InputError(graph.path, f"output shape {list(out_shape)}: a classifier outputs [1, classes]")
    ends_in_softmax = any(n.op == "SoftMax" and n.outputs[0] == graph.outputs[0] for n in graph.nodes)
    if ends_in_softmax:
        nodes[-1].output[0] = OUTPUT_NAME
    else:  # the file outputs logits; the contract's output is the softmax
        emit("Softmax", [last], OUTPUT_NAME, axis=1)
    graph_proto = helper.make_graph(
        nodes, "ms_lite", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, height, width])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", out_shape[1]])], inits)
    model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="poc.ms_onnx")
    model.ir_version = 6
    return model


# --- ONNX -> Lite, as the 1.0 / 1.1 converters wrote it (tests and the demo) -------------------------------------

def from_onnx(model: onnx.ModelProto, generation: str = "1.1", head: str = "matmul") -> LiteGraph:
    """An ONNX export (BN already folded into Conv, as the TorchScript exporter writes it) as the Lite converter
    wrote it: NHWC input, KHWC conv weights with the bias as a third input, a ReLU fused into the conv before it,
    a ReLU after an Add kept as an Activation, global pooling, the flatten as a batch-1 Reshape, the head as
    MatMul{transposeB} + BiasAdd (``head='matmul'``) or FullConnection (``'fc'``), format nodes of ``generation``
    1.0 (Nhwc2Nchw / Nchw2Nhwc around every Add) or 1.1 (one Transpose left after the pool)."""
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    tensors: list[LiteTensor] = []
    index: dict[str, int] = {}

    def tensor(name: str | None, dims, data=None, fmt="NHWC", dtype=np.float32) -> int:
        t = LiteTensor(len(tensors), list(dims), np.dtype(dtype), fmt, 2 if data is not None else 0,
                       None if data is None else np.ascontiguousarray(data, dtype), name or "")
        tensors.append(t)
        if name:
            index[name] = t.index
        return t.index

    inp = g.input[0]
    c, h, w = (d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
    tensor(inp.name, [1, h, w, c], fmt="NHWC")
    nodes: list[LiteNode] = []
    fused = set()
    for n in g.node:
        if n.name in fused or n.op_type in ("Identity",):
            if n.op_type == "Identity":
                index[n.output[0]] = index[n.input[0]]
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Conv":
            wt = consts[n.input[1]]
            ins = [index[n.input[0]], tensor(None, wt.transpose(0, 2, 3, 1).shape, wt.transpose(0, 2, 3, 1), "KHWC")]
            if len(n.input) > 2:
                ins.append(tensor(None, consts[n.input[2]].shape, consts[n.input[2]], "NHWC"))
            out_name, act = n.output[0], NO_ACTIVATION
            nxt = consumers.get(n.output[0], [])
            if len(nxt) == 1 and nxt[0].op_type == "Relu":
                fused.add(nxt[0].name)
                out_name, act = nxt[0].output[0], RELU
            pads = attrs.get("pads", [0, 0, 0, 0])
            strides = attrs.get("strides", [1, 1])
            fields = {"format": 0, "group": attrs.get("group", 1), "channelIn": wt.shape[1], "channelOut": wt.shape[0],
                      "kernelW": wt.shape[3], "kernelH": wt.shape[2], "strideW": strides[1], "strideH": strides[0],
                      "padMode": 0, "padUp": pads[0], "padDown": pads[2], "padLeft": pads[1], "padRight": pads[3],
                      "dilateW": 1, "dilateH": 1, "hasBias": 0 if generation == "1.1" else int(len(ins) > 2),
                      "activationType": act}
            nodes.append(LiteNode(n.name, "Conv2D", fields, ins, [tensor(out_name, [])]))
        elif n.op_type == "Relu":
            nodes.append(LiteNode(n.name, "Activation", {"type": RELU, "alpha": 0.2}, [index[n.input[0]]],
                                  [tensor(n.output[0], [])]))
        elif n.op_type == "Add":
            a, b = index[n.input[0]], index[n.input[1]]
            if generation == "1.0":  # the Add, and a ReLU after it, run NCHW between format nodes
                a2, b2 = tensor(None, [], fmt="NCHW"), tensor(None, [], fmt="NCHW")
                nodes += [LiteNode(f"{n.name}_a", "Nhwc2Nchw", {}, [a], [a2]),
                          LiteNode(f"{n.name}_b", "Nhwc2Nchw", {}, [b], [b2])]
                s = tensor(None, [], fmt="NCHW")
                nodes.append(LiteNode(n.name, "Add", {"activationType": 0}, [a2, b2], [s]))
                out_name, nxt = n.output[0], consumers.get(n.output[0], [])
                if len(nxt) == 1 and nxt[0].op_type == "Relu":
                    fused.add(nxt[0].name)
                    r = tensor(None, [], fmt="NCHW")
                    nodes.append(LiteNode(nxt[0].name, "Activation", {"type": RELU, "alpha": 0.2}, [s], [r]))
                    s, out_name = r, nxt[0].output[0]
                nodes.append(LiteNode(f"{n.name}_back", "Nchw2Nhwc", {}, [s], [tensor(out_name, [])]))
            else:
                nodes.append(LiteNode(n.name, "Add", {"activationType": 0}, [a, b], [tensor(n.output[0], [])]))
        elif n.op_type in ("GlobalAveragePool", "ReduceMean"):
            fields = {k: default for k, (_, _, default) in PRIMITIVES[PRIMITIVE_TYPES["Pooling"]][1].items()}
            fields.update(poolingMode=1, **{"global": 1})
            pooled = tensor(None if generation == "1.1" else n.output[0], [])
            nodes.append(LiteNode(n.name, "Pooling", fields, [index[n.input[0]]], [pooled]))
            if generation == "1.1":  # the one Transpose the 1.1 converter leaves after the pool
                nodes.append(LiteNode(f"{n.name}_t", "Transpose", {"perm": NHWC_TO_NCHW, "conjugate": 0}, [pooled],
                                      [tensor(n.output[0], [], fmt="NCHW")]))
        elif n.op_type in ("Flatten", "Reshape"):
            nodes.append(LiteNode(n.name, "Reshape", {"format": 0, "shape": [1, -1]}, [index[n.input[0]]],
                                  [tensor(n.output[0], [])]))
        elif n.op_type == "Gemm":
            wt = consts[n.input[1]] if attrs.get("transB", 0) else consts[n.input[1]].T  # [out, in]
            wi = tensor(None, wt.shape, wt, "NC")
            bias = consts[n.input[2]] if len(n.input) > 2 else None
            if head == "fc":
                ins = [index[n.input[0]], wi] + ([tensor(None, bias.shape, bias, "NC")] if bias is not None else [])
                nodes.append(LiteNode(n.name, "FullConnection", {"hasBias": int(bias is not None), "axis": 1,
                                                                 "useAxis": 0, "activationType": 0},
                                      ins, [tensor(n.output[0], [])]))
            else:
                mm = tensor(None if bias is not None else n.output[0], [])
                nodes.append(LiteNode(n.name, "MatMul", {"broadcast": 0, "transposeA": 0, "transposeB": 1},
                                      [index[n.input[0]], wi], [mm]))
                if bias is not None:
                    nodes.append(LiteNode(f"{n.name}_bias", "BiasAdd", {"axis": [1]},
                                          [mm, tensor(None, bias.shape, bias, "NC")], [tensor(n.output[0], [])]))
        elif n.op_type == "Softmax":
            nodes.append(LiteNode(n.name, "SoftMax", {"axis": -1}, [index[n.input[0]]], [tensor(n.output[0], [])]))
        else:
            raise ValueError(f"{n.op_type} is not part of the converter emulation")
    lite = LiteGraph(Path("<memory>"), "MSL1" if generation == "1.1" else "",
                     f"MindSpore Lite {generation}.0", tensors, nodes, [0], [index[g.output[0].name]])
    return lite
