"""MindSpore Lite ``.ms`` models (flatbuffer, the Lite 1.0 / 1.1 schema), read without MindSpore.

The file is untrusted: every offset and length is checked against the buffer before it is followed, and anything
the reader does not handle (an unknown primitive, a field value it cannot translate, quantized tensors, the Lite
>= 1.2 schema ``MSL2``) is an error that names it, rather than a guess. What a file holds comes back as plain data
(``LiteGraph``: tensors with their numpy data, nodes with their primitive's fields), which ``poc.formats.ms_lite_onnx``
translates to ONNX and evaluates op by op.

Slot numbers are the schema's field indices (``mindspore/lite/schema/model.fbs`` and ``ops.fbs`` at v1.0.0 /
v1.1.0); a field's vtable entry is at byte 4 + 2 * slot.
"""
from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np

from poc.shared.errors import InputError, atomic_file, read_regular

MAX_FILE_BYTES = 1 << 30
MAX_ITEMS = 1 << 24  # any vector longer than this in a model file is a corrupt length
MAX_RANK = 8  # a CNN's tensors have rank <= 4; more is a corrupt dims vector
IDENTIFIERS = (b"MSL1",)  # 1.1; 1.0 files have none; MSL2 (Lite >= 1.2) is another schema
# TypeIds an activation tensor may carry when the converter's shape inference stopped before it: kTypeUnknown and
# kMetaTypeNone (what the 1.1 converter leaves after a Reshape fed by a computed shape). Inferred from the producer.
UNSET_TYPES = (0, 7)

# TypeId of Tensor.dataType -> numpy dtype
DATA_TYPES = {30: np.bool_, 32: np.int8, 33: np.int16, 34: np.int32, 35: np.int64, 37: np.uint8, 38: np.uint16,
              39: np.uint32, 40: np.uint64, 42: np.float16, 43: np.float32, 44: np.float64}
# Tensor.format
FORMATS = {0: "NCHW", 1: "NHWC", 2: "NHWC4", 3: "HWKC", 4: "HWCK", 5: "KCHW", 6: "CKHW", 7: "KHWC", 8: "CHWK",
           9: "HW", 10: "HW4", 11: "NC", 12: "NC4", 100: "NC4HW4"}

# Primitive union members this reader knows: type -> (name, {field: (slot, kind, default)}).
# kinds: b = byte/bool, i = int32, f = float32, vi = [int32], vl = [int64].
PRIMITIVES = {
    1: ("Concat", {"axis": (0, "i", 0), "n": (1, "i", 0)}),
    2: ("SoftMax", {"axis": (0, "i", -1)}),
    3: ("Activation", {"type": (0, "b", 0), "alpha": (1, "f", 0.2)}),
    4: ("Conv2D", {"format": (0, "i", 0), "group": (1, "i", 0), "channelIn": (2, "i", 0), "channelOut": (3, "i", 0),
                   "kernelW": (4, "i", 0), "kernelH": (5, "i", 0), "strideW": (6, "i", 0), "strideH": (7, "i", 0),
                   "padMode": (8, "b", 0), "padUp": (9, "i", 0), "padDown": (10, "i", 0), "padLeft": (11, "i", 0),
                   "padRight": (12, "i", 0), "dilateW": (13, "i", 0), "dilateH": (14, "i", 0),
                   "hasBias": (15, "b", 0), "activationType": (16, "b", 0)}),
    7: ("BiasAdd", {"axis": (0, "vi", None)}),
    8: ("Pooling", {"format": (0, "i", 0), "poolingMode": (1, "b", 0), "global": (2, "b", 0), "windowW": (3, "i", 0),
                    "windowH": (4, "i", 0), "strideW": (5, "i", 0), "strideH": (6, "i", 0), "padMode": (7, "b", 0),
                    "padUp": (8, "i", 0), "padDown": (9, "i", 0), "padLeft": (10, "i", 0), "padRight": (11, "i", 0),
                    "roundMode": (12, "b", 0), "activationType": (13, "b", 0), "avgMode": (14, "i", 0)}),
    14: ("FullConnection", {"hasBias": (0, "b", 0), "axis": (1, "i", 0), "useAxis": (2, "b", 0),
                            "activationType": (3, "b", 0)}),
    18: ("Reshape", {"format": (0, "i", 0), "shape": (1, "vl", None)}),
    21: ("Add", {"activationType": (0, "b", 0)}),
    23: ("MatMul", {"broadcast": (0, "b", 0), "transposeA": (1, "b", 0), "transposeB": (2, "b", 0)}),
    44: ("Shape", {}),
    45: ("Nchw2Nhwc", {}),
    46: ("Nhwc2Nchw", {}),
    71: ("Transpose", {"perm": (0, "vi", None), "conjugate": (1, "b", 0)}),
    73: ("Unsqueeze", {"axis": (0, "vi", None)}),
    86: ("Gather", {"axis": (0, "i", 0), "batchDims": (1, "i", 0)}),
    122: ("Flatten", {}),
}
PRIMITIVE_TYPES = {name: t for t, (name, _) in PRIMITIVES.items()}
# Activation types (schema enum ActivationType)
NO_ACTIVATION, RELU, SIGMOID, RELU6 = 0, 1, 2, 3


@dataclass
class LiteTensor:
    index: int
    dims: list[int]
    dtype: np.dtype | None  # None: unset in the file (an activation whose type the converter did not infer)
    format: str
    node_type: int
    data: np.ndarray | None  # a constant's values, shaped dims; None for an activation
    name: str = ""


@dataclass
class LiteNode:
    name: str
    op: str
    fields: dict
    inputs: list[int]
    outputs: list[int]


@dataclass
class LiteGraph:
    path: Path
    identifier: str  # "MSL1" or "" (a 1.0 file)
    version: str
    tensors: list[LiteTensor]
    nodes: list[LiteNode]
    inputs: list[int]
    outputs: list[int]
    notes: list[str] = field(default_factory=list)


class _Reader:
    """Bounds-checked flatbuffer access: every read names the file and what was being read when it fails."""

    def __init__(self, path: Path, buf: bytes):
        self.path, self.buf, self.size = path, buf, len(buf)

    def fail(self, what: str):
        raise InputError(self.path, f"not a valid MindSpore Lite model: {what}")

    def scalar(self, fmt: str, pos: int, what: str):
        n = struct.calcsize(fmt)
        if pos < 0 or pos + n > self.size:
            self.fail(f"{what} at byte {pos} is outside the {self.size}-byte file")
        return struct.unpack_from("<" + fmt, self.buf, pos)[0]

    def follow(self, pos: int, what: str) -> int:
        """The position a uoffset stored at ``pos`` points to."""
        target = pos + self.scalar("I", pos, f"offset of {what}")
        if target >= self.size:
            self.fail(f"{what} points to byte {target}, outside the {self.size}-byte file")
        return target

    def table(self, pos: int, what: str) -> _Table:
        vtable = pos - self.scalar("i", pos, f"vtable offset of {what}")
        vt_size = self.scalar("H", vtable, f"vtable of {what}")
        if vt_size < 4 or vt_size % 2 or vtable + vt_size > self.size:
            self.fail(f"the vtable of {what} (size {vt_size}) does not fit the file")
        return _Table(self, pos, vtable, (vt_size - 4) // 2, what)


class _Table:
    def __init__(self, reader: _Reader, pos: int, vtable: int, slots: int, what: str):
        self.r, self.pos, self.vtable, self.slots, self.what = reader, pos, vtable, slots, what

    def field(self, slot: int) -> int | None:
        if slot >= self.slots:
            return None
        off = self.r.scalar("H", self.vtable + 4 + 2 * slot, f"{self.what} field {slot}")
        return None if off == 0 else self.pos + off

    def scalar(self, slot: int, fmt: str, default):
        pos = self.field(slot)
        return default if pos is None else self.r.scalar(fmt, pos, f"{self.what} field {slot}")

    def table(self, slot: int, what: str) -> _Table | None:
        pos = self.field(slot)
        return None if pos is None else self.r.table(self.r.follow(pos, what), what)

    def _vector(self, slot: int, what: str, item_bytes: int) -> tuple[int, int] | None:
        pos = self.field(slot)
        if pos is None:
            return None
        start = self.r.follow(pos, what)
        n = self.r.scalar("I", start, f"length of {what}")
        if n > MAX_ITEMS or start + 4 + n * item_bytes > self.r.size:
            self.r.fail(f"{what} claims {n} items, more than the file holds")
        return start + 4, n

    def scalars(self, slot: int, fmt: str, what: str) -> list | None:
        v = self._vector(slot, what, struct.calcsize(fmt))
        if v is None:
            return None
        start, n = v
        return list(struct.unpack_from(f"<{n}{fmt}", self.r.buf, start))

    def raw(self, slot: int, what: str) -> bytes | None:
        v = self._vector(slot, what, 1)
        return None if v is None else self.r.buf[v[0]:v[0] + v[1]]

    def string(self, slot: int, what: str) -> str:
        data = self.raw(slot, what)
        try:
            return "" if data is None else data.decode("utf-8")
        except UnicodeDecodeError:
            self.r.fail(f"{what} is not UTF-8 text")

    def tables(self, slot: int, what: str) -> list[_Table]:
        v = self._vector(slot, what, 4)
        if v is None:
            return []
        start, n = v
        return [self.r.table(self.r.follow(start + 4 * i, f"{what}[{i}]"), f"{what}[{i}]") for i in range(n)]


def read_ms(path) -> LiteGraph:
    """Read and check a ``.ms`` file; any fault is an InputError naming the file and what is wrong."""
    path = Path(path)
    buf = read_regular(path, "MindSpore Lite model", MAX_FILE_BYTES)
    r = _Reader(path, buf)
    if len(buf) < 8:
        r.fail(f"{len(buf)} bytes")
    ident = buf[4:8]
    if ident == b"MSL2":
        raise InputError(path, "a MindSpore Lite >= 1.2 model (identifier MSL2): this reader reads the Lite 1.0/1.1 "
                               "schema (no identifier or MSL1) that the published files use")
    root = r.follow(0, "root table")  # always follow byte 0: MSL1 files may carry a stale second root
    meta = r.table(root, "MetaGraph")
    version = meta.string(1, "MetaGraph.version")
    tensors = [_tensor(r, t, i) for i, t in enumerate(meta.tables(7, "MetaGraph.allTensors"))]
    nodes = [_node(r, n, i, len(tensors)) for i, n in enumerate(meta.tables(6, "MetaGraph.nodes"))]
    if not nodes:
        r.fail("the graph has no nodes")
    inputs = meta.scalars(3, "I", "MetaGraph.inputIndex") or []
    outputs = meta.scalars(4, "I", "MetaGraph.outputIndex") or []
    for what, idx in (("inputIndex", inputs), ("outputIndex", outputs)):
        if not idx or any(i >= len(tensors) for i in idx):
            r.fail(f"MetaGraph.{what} {idx[:8]} does not name tensors of the {len(tensors)} in the file")
    for i in inputs:
        if tensors[i].data is not None:
            r.fail(f"graph input tensor {i} is a constant")
    graph = LiteGraph(path, ident.decode("ascii") if ident in IDENTIFIERS else "", version, tensors, nodes,
                      inputs, outputs)
    topological_order(graph)  # a cycle or a tensor read before it is written is refused here
    return graph


def _tensor(r: _Reader, t: _Table, index: int) -> LiteTensor:
    what = f"tensor {index}"
    dtype_id = t.scalar(1, "i", 0)
    raw = t.raw(6, f"{what} data")
    if dtype_id not in DATA_TYPES and not (dtype_id in UNSET_TYPES and not raw):
        r.fail(f"{what} has data type {dtype_id}, which this reader does not handle")
    dims = t.scalars(2, "i", f"{what} dims") or []
    if len(dims) > MAX_RANK or any(d < -1 for d in dims):
        r.fail(f"{what} has dims {dims[:MAX_RANK + 1]}")
    fmt = t.scalar(3, "i", 0)
    if fmt not in FORMATS:
        r.fail(f"{what} has format {fmt}, which this reader does not handle")
    quant = t.tables(7, f"{what} quantParams")
    if quant and any(q.field(0) is not None or q.field(1) is not None for q in quant):
        raise InputError(r.path, f"{what} is quantized (quantParams); quantized .ms models are not read: convert "
                                 "the float model, or dequantize it first")
    if t.field(8) is not None:
        raise InputError(r.path, f"{what} is weight-clustered (quantClusters); not read")
    data = None
    if raw:
        dtype = np.dtype(DATA_TYPES[dtype_id]).newbyteorder("<")
        count = math.prod(dims)  # a Python int: dims that overflow int64 still compare exactly with the bytes present
        if -1 in dims or len(raw) != count * dtype.itemsize:
            r.fail(f"{what}: {len(raw)} data bytes do not match dims {dims} of {dtype.name} "
                   f"({count * dtype.itemsize} bytes)")
        data = np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="), copy=True).reshape(dims)
    dtype = np.dtype(DATA_TYPES[dtype_id]) if dtype_id in DATA_TYPES else None
    return LiteTensor(index, dims, dtype, FORMATS[fmt], t.scalar(0, "i", 0), data, t.string(9, f"{what} name"))


def _node(r: _Reader, n: _Table, index: int, n_tensors: int) -> LiteNode:
    name = n.string(0, f"node {index} name") or f"node{index}"
    prim = n.table(2, f"node {name} primitive")
    if prim is None:
        r.fail(f"node {name} has no primitive")
    ptype = prim.scalar(0, "B", 0)
    if ptype not in PRIMITIVES:
        raise InputError(r.path, f"node {name}: primitive type {ptype} is not handled by this reader "
                                 f"(known: {', '.join(sorted(PRIMITIVE_TYPES))})")
    op, schema = PRIMITIVES[ptype]
    value = prim.table(1, f"node {name} {op}")
    fields = {}
    for key, (slot, kind, default) in schema.items():
        if value is None:
            fields[key] = default
        elif kind == "b":
            fields[key] = value.scalar(slot, "B", default)
        elif kind == "i":
            fields[key] = value.scalar(slot, "i", default)
        elif kind == "f":
            fields[key] = value.scalar(slot, "f", default)
        else:
            fields[key] = value.scalars(slot, "i" if kind == "vi" else "q", f"node {name} {op}.{key}")
    inputs = n.scalars(3, "I", f"node {name} inputIndex") or []
    outputs = n.scalars(4, "I", f"node {name} outputIndex") or []
    bad = [i for i in inputs + outputs if i >= n_tensors]
    if bad or not outputs:
        r.fail(f"node {name} names tensor {bad[0] if bad else '(none)'} of the {n_tensors} in the file")
    if n.scalar(5, "i", 0) not in (0,):
        raise InputError(r.path, f"node {name} has quantType {n.scalar(5, 'i', 0)}: quantized nodes are not read")
    return LiteNode(name, op, fields, inputs, outputs)


def topological_order(graph: LiteGraph) -> list[LiteNode]:
    """The nodes in an order where every tensor is written before it is read: breadth-first from the inputs (Kahn's
    algorithm with a FIFO, linear in nodes and edges; ties in file order), as the 1.1 converter's last pass orders
    them. A cycle, a tensor written twice, read but never written (and not a constant or graph input), or a
    graph output no node writes is refused."""
    def refuse(what: str):
        raise InputError(graph.path, f"not a valid MindSpore Lite model: {what}")
    known = set(graph.inputs) | {t.index for t in graph.tensors if t.data is not None}
    writer: dict[int, int] = {}
    for i, node in enumerate(graph.nodes):
        for t in node.outputs:
            if t in writer or t in known:
                refuse(f"tensor {t} is written twice (node {node.name})")
            writer[t] = i
    for t in graph.outputs:
        if t not in writer:
            refuse(f"graph output tensor {t} is written by no node")
    waiting = [0] * len(graph.nodes)  # inputs each node still waits for
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        for t in node.inputs:
            if t in known:
                continue
            if t not in writer:
                refuse(f"node {node.name} reads tensor {t}, which nothing writes")
            waiting[i] += 1
            readers.setdefault(t, []).append(i)
    ready = deque(i for i, w in enumerate(waiting) if w == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(graph.nodes[i])
        for t in graph.nodes[i].outputs:
            for j in readers.get(t, ()):
                waiting[j] -= 1
                if waiting[j] == 0:
                    ready.append(j)
    if len(order) < len(graph.nodes):
        stuck = [n.name for i, n in enumerate(graph.nodes) if waiting[i]]
        refuse(f"the nodes form a cycle ({', '.join(stuck[:3])} ...)")
    return order


def ends_in_softmax(graph: LiteGraph) -> bool:
    """Whether the graph's output is a SoftMax's (else it outputs logits, and the contract's softmax is added)."""
    return any(n.op == "SoftMax" and n.outputs[0] == graph.outputs[0] for n in graph.nodes)


# --- the writer (tests and the demo: files as the 1.0 / 1.1 converters wrote them) -----------------------------

_TYPE_IDS = {np.dtype(v): k for k, v in DATA_TYPES.items()}
_FORMAT_IDS = {v: k for k, v in FORMATS.items()}


def write_ms(graph: LiteGraph, path, identifier: bool | None = None) -> Path:
    """Write ``graph`` as a ``.ms`` flatbuffer (same slots as the reader). ``identifier``: finish with ``MSL1`` the
    way the 1.1 converter did (finished twice: root offset, ``MSL1``, a stale root offset ...); default: when the
    graph says ``MSL1``."""
    b = flatbuffers.Builder(1 << 20)
    tensor_offsets = []
    for t in graph.tensors:
        data = b.CreateByteVector(np.ascontiguousarray(t.data, t.dtype.newbyteorder("<")).tobytes()) \
            if t.data is not None else None
        dims = _int_vector(b, t.dims, "i")
        name = b.CreateString(t.name) if t.name and graph.identifier else None
        quant = None
        if getattr(t, "quant_scale", None) is not None:  # a quantized tensor (only to test that it is refused)
            b.StartObject(2)
            b.PrependFloat64Slot(0, float(t.quant_scale), 0.0)
            b.PrependInt32Slot(1, 0, 1)
            q = b.EndObject()
            quant = _offset_vector(b, [q])
        b.StartObject(10)
        b.PrependInt32Slot(0, t.node_type, 0)
        b.PrependInt32Slot(1, UNSET_TYPES[1] if t.dtype is None else _TYPE_IDS[np.dtype(t.dtype)], 0)
        b.PrependUOffsetTRelativeSlot(2, dims, 0)
        b.PrependInt32Slot(3, _FORMAT_IDS[t.format], 0)
        if data is not None:
            b.PrependUOffsetTRelativeSlot(6, data, 0)
        if quant is not None:
            b.PrependUOffsetTRelativeSlot(7, quant, 0)
        if name is not None:
            b.PrependUOffsetTRelativeSlot(9, name, 0)
        tensor_offsets.append(b.EndObject())
    node_offsets = []
    for n in graph.nodes:
        ptype = PRIMITIVE_TYPES[n.op]
        schema = PRIMITIVES[ptype][1]
        vectors = {k: _int_vector(b, n.fields[k], "i" if kind == "vi" else "q") for k, (slot, kind, _) in
                   schema.items() if kind in ("vi", "vl") and n.fields.get(k) is not None}
        b.StartObject(max([slot for slot, _, _ in schema.values()], default=-1) + 1)
        for key, (slot, kind, default) in schema.items():
            value = n.fields.get(key, default)
            if kind == "b":
                b.PrependUint8Slot(slot, int(value), int(default))
            elif kind == "i":
                b.PrependInt32Slot(slot, int(value), int(default))
            elif kind == "f":
                b.PrependFloat32Slot(slot, float(value), float(default))
            elif key in vectors:
                b.PrependUOffsetTRelativeSlot(slot, vectors[key], 0)
        value_offset = b.EndObject()
        b.StartObject(2)
        b.PrependUint8Slot(0, ptype, 0)
        b.PrependUOffsetTRelativeSlot(1, value_offset, 0)
        prim = b.EndObject()
        name = b.CreateString(n.name)
        ins, outs = _int_vector(b, n.inputs, "I"), _int_vector(b, n.outputs, "I")
        b.StartObject(6)
        b.PrependUOffsetTRelativeSlot(0, name, 0)
        b.PrependInt32Slot(1, 2, 2)
        b.PrependUOffsetTRelativeSlot(2, prim, 0)
        b.PrependUOffsetTRelativeSlot(3, ins, 0)
        b.PrependUOffsetTRelativeSlot(4, outs, 0)
        node_offsets.append(b.EndObject())
    nodes_vec, tensors_vec = _offset_vector(b, node_offsets), _offset_vector(b, tensor_offsets)
    ins, outs = _int_vector(b, graph.inputs, "I"), _int_vector(b, graph.outputs, "I")
    version = b.CreateString(graph.version)
    b.StartObject(9)
    b.PrependUOffsetTRelativeSlot(1, version, 0)
    b.PrependUOffsetTRelativeSlot(3, ins, 0)
    b.PrependUOffsetTRelativeSlot(4, outs, 0)
    b.PrependUOffsetTRelativeSlot(6, nodes_vec, 0)
    b.PrependUOffsetTRelativeSlot(7, tensors_vec, 0)
    b.Finish(b.EndObject())
    buf = bytes(b.Output())
    if identifier if identifier is not None else graph.identifier == "MSL1":
        # finished a second time with the identifier: a new root offset (the table moved 8 bytes), MSL1, the stale one
        root = struct.unpack_from("<I", buf, 0)[0]
        buf = struct.pack("<I", root + 8) + b"MSL1" + buf
    with atomic_file(path) as f:
        f.write(buf)
    return Path(path)


def _int_vector(b, values, fmt: str):
    prepend = {"i": b.PrependInt32, "I": b.PrependUint32, "q": b.PrependInt64}[fmt]
    b.StartVector(struct.calcsize(fmt), len(values), struct.calcsize(fmt))
    for v in reversed(list(values)):
        prepend(int(v))
    return b.EndVector()


def _offset_vector(b, offsets):
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()
