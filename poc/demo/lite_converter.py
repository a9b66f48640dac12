"""The MindSpore Lite 1.0 / 1.1 converters, emulated: an ONNX export written as those converters wrote a ``.ms``
(``MODELS.md``: BN folded into the convolutions, ReLU fused where the converter fuses it, KHWC weights, an NHWC
input, format nodes of either generation, either head form). It makes the demo's and the tests' ``.ms`` files in
exactly the published files' form; the toolkit's own path reads them (``poc.formats.ms_lite_onnx``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from poc.formats.ms_lite import (
    NO_ACTIVATION,
    PRIMITIVE_TYPES,
    PRIMITIVES,
    RELU,
    LiteGraph,
    LiteNode,
    LiteTensor,
    topological_order,
)
from poc.formats.ms_lite_onnx import NHWC_TO_NCHW


def from_onnx(model: onnx.ModelProto, generation: str = "1.1", head: str = "matmul", flatten_shape=(1, -1),
              order: str = "file") -> LiteGraph:
    """An ONNX export (BN already folded into Conv, as the TorchScript exporter writes it) as the Lite converter
    wrote it: NHWC input, KHWC conv weights with the bias as a third input, a ReLU fused into the conv before it,
    a ReLU after an Add kept as an Activation, global pooling, the head as MatMul{transposeB} + BiasAdd
    (``head='matmul'``) or FullConnection (``'fc'``), format nodes of ``generation`` 1.0 (Nhwc2Nchw / Nchw2Nhwc
    around every Add) or 1.1 (one Transpose after the pool per edge that reads it).

    The flatten: an ONNX ``Flatten`` becomes a Reshape with the attribute ``flatten_shape`` ([1, -1] as MODELS.md
    describes, [0, -1] as the 1.1 ONNX parser translates Flatten); ``x.view(x.size(0), -1)`` (Shape, Gather,
    Unsqueeze, Concat, Reshape) keeps its chain with int32 constants, and the converter's shape inference stops at
    that Reshape: its output and everything after it have no dims and no data type. ``order``: ``"file"`` keeps
    the ONNX order; ``"bfs"`` orders the nodes breadth-first as the 1.1 converter's last pass does (a shortcut's
    projection right after the block's first convolution)."""
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    tensors: list[LiteTensor] = []
    index: dict[str, int] = {}
    edge: dict[tuple[str, str], int] = {}  # (reading node, ONNX name) -> tensor, where one edge has its own tensor
    unset: set[str] = set()  # ONNX names whose Lite tensors the converter left without a data type

    def tensor(name: str | None, dims, data=None, fmt="NHWC", dtype=np.float32) -> int:
        t = LiteTensor(len(tensors), list(dims), None if dtype is None else np.dtype(dtype), fmt,
                       2 if data is not None else 0, None if data is None else np.ascontiguousarray(data, dtype),
                       name or "")
        tensors.append(t)
        if name:
            index[name] = t.index
        return t.index

    def src(n, name: str) -> int:
        if (n.name, name) in edge:
            return edge[(n.name, name)]
        if name not in index and name in consts:  # an integer constant of a shape computation (int32 in Lite)
            data = consts[name].astype(np.int32)
            return tensor(None, data.shape, data, "NCHW", np.int32)
        return index[name]

    def out(n, dtype=np.float32, fmt="NHWC") -> int:
        late = any(i in unset for i in n.input)
        if late:
            unset.add(n.output[0])
        return tensor(n.output[0], [], fmt=fmt, dtype=None if late else dtype)

    inp = g.input[0]
    c, h, w = (d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
    tensor(inp.name, [1, h, w, c], fmt="NHWC")
    nodes: list[LiteNode] = []
    fused = set()
    for n in g.node:
        if n.name in fused or n.op_type in ("Identity", "Constant"):
            if n.op_type == "Identity" and n.input[0] in consts:  # the exporter shares equal initializers so
                consts[n.output[0]] = consts[n.input[0]]
            elif n.op_type == "Identity":
                index[n.output[0]] = index[n.input[0]]
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Conv":
            wt = consts[n.input[1]]
            ins = [src(n, n.input[0]), tensor(None, wt.transpose(0, 2, 3, 1).shape, wt.transpose(0, 2, 3, 1), "KHWC")]
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
            nodes.append(LiteNode(n.name, "Activation", {"type": RELU, "alpha": 0.2}, [src(n, n.input[0])], [out(n)]))
        elif n.op_type == "Add":
            a, b = src(n, n.input[0]), src(n, n.input[1])
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
                nodes.append(LiteNode(n.name, "Add", {"activationType": 0}, [a, b], [out(n)]))
        elif n.op_type in ("GlobalAveragePool", "ReduceMean"):
            fields = {k: default for k, (_, _, default) in PRIMITIVES[PRIMITIVE_TYPES["Pooling"]][1].items()}
            fields.update(poolingMode=1, **{"global": 1})
            pooled = tensor(None if generation == "1.1" else n.output[0], [])
            nodes.append(LiteNode(n.name, "Pooling", fields, [src(n, n.input[0])], [pooled]))
            if generation == "1.1":  # the Transposes the 1.1 converter leaves after the pool: one per reading edge
                for k, reader in enumerate(consumers.get(n.output[0], [])):
                    t = tensor(None, [], fmt="NCHW")
                    nodes.append(LiteNode(f"{n.name}_t{k}", "Transpose", {"perm": NHWC_TO_NCHW, "conjugate": 0},
                                          [pooled], [t]))
                    edge[(reader.name, n.output[0])] = t
        elif n.op_type == "Flatten":
            nodes.append(LiteNode(n.name, "Reshape", {"format": 0, "shape": list(flatten_shape)},
                                  [src(n, n.input[0])], [out(n)]))
        elif n.op_type == "Reshape":  # a computed target: the converter's shape inference stops here
            unset.add(n.output[0])
            nodes.append(LiteNode(n.name, "Reshape", {"format": 0, "shape": None},
                                  [src(n, n.input[0]), src(n, n.input[1])], [out(n)]))
        elif n.op_type == "Shape":
            nodes.append(LiteNode(n.name, "Shape", {}, [src(n, n.input[0])], [out(n, np.int32, "NCHW")]))
        elif n.op_type == "Gather":
            nodes.append(LiteNode(n.name, "Gather", {"axis": attrs.get("axis", 0), "batchDims": 0},
                                  [src(n, n.input[0]), src(n, n.input[1])], [out(n, np.int32, "NCHW")]))
        elif n.op_type == "Unsqueeze":
            nodes.append(LiteNode(n.name, "Unsqueeze", {"axis": list(attrs["axes"])}, [src(n, n.input[0])],
                                  [out(n, np.int32, "NCHW")]))
        elif n.op_type == "Concat":
            ins = [src(n, i) for i in n.input]
            kind = np.int32 if all(tensors[i].dtype == np.int32 for i in ins) else np.float32
            nodes.append(LiteNode(n.name, "Concat", {"axis": attrs["axis"], "n": len(ins)}, ins, [out(n, kind)]))
        elif n.op_type == "Gemm":
            wt = consts[n.input[1]] if attrs.get("transB", 0) else consts[n.input[1]].T  # [out, in]
            wi = tensor(None, wt.shape, wt, "NC")
            bias = consts[n.input[2]] if len(n.input) > 2 else None
            late = n.input[0] in unset
            if head == "fc":
                ins = [src(n, n.input[0]), wi] + ([tensor(None, bias.shape, bias, "NC")] if bias is not None else [])
                nodes.append(LiteNode(n.name, "FullConnection", {"hasBias": int(bias is not None), "axis": 1,
                                                                 "useAxis": 0, "activationType": 0},
                                      ins, [out(n)]))
            else:
                mm = tensor(None if bias is not None else n.output[0], [], dtype=None if late else np.float32)
                nodes.append(LiteNode(n.name, "MatMul", {"broadcast": 0, "transposeA": 0, "transposeB": 1},
                                      [src(n, n.input[0]), wi], [mm]))
                if bias is not None:
                    nodes.append(LiteNode(f"{n.name}_bias", "BiasAdd", {"axis": [1]},
                                          [mm, tensor(None, bias.shape, bias, "NC")], [out(n)]))
                elif late:
                    unset.add(n.output[0])
        elif n.op_type == "Softmax":
            nodes.append(LiteNode(n.name, "SoftMax", {"axis": -1}, [src(n, n.input[0])], [out(n)]))
        else:
            raise ValueError(f"{n.op_type} is not part of the converter emulation")
    lite = LiteGraph(Path("<memory>"), "MSL1" if generation == "1.1" else "",
                     f"MindSpore Lite {generation}.0", tensors, nodes, [0], [index[g.output[0].name]])
    if order == "bfs":  # the reader's topological order is breadth-first in file order, as the converter's pass
        lite.nodes = topological_order(lite)
    return lite

