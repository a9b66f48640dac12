"""MindSpore checkpoints (``.ckpt``), read without MindSpore, and written (for tests and the demo) in the 1.x layout.

A ``.ckpt`` is a sequence of serialized protobuf ``Checkpoint`` messages (MindSpore's ``checkpoint.proto``);
protobuf parses the concatenation as one message whose repeated ``value`` is the union. A large parameter is split
into consecutive values with the same tag (each with the full dims): their contents are joined. MindSpore 2.x may
end the file with ``crc_num`` and a 10-byte big-endian CRC32 of everything before it: stripped and verified.
Parsing protobuf runs no code from the file; sizes are checked against dims before any array is made.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError

from poc.shared.errors import InputError, atomic_file, read_regular
from poc.shared.prototext import F, message_class

_OPT, _REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
_Checkpoint = message_class("poc_ms_ckpt", {
    "Checkpoint": [("value", F.TYPE_MESSAGE, _REP, "Value")],
    "Value": [("tag", F.TYPE_STRING, _OPT, None), ("tensor", F.TYPE_MESSAGE, _OPT, "TensorProto"),
              ("maptensor", F.TYPE_MESSAGE, _OPT, "MapTensorProto")],
    "TensorProto": [("dims", F.TYPE_INT64, _REP, None), ("tensor_type", F.TYPE_STRING, _OPT, None),
                    ("tensor_content", F.TYPE_BYTES, _OPT, None)],
    "MapTensorProto": [("tensor", F.TYPE_MESSAGE, _REP, "TensorProto")],
}, "Checkpoint")

CRC_MARK = b"crc_num"
MAX_FILE_BYTES = 4 << 30
MAX_RANK = 8
# tensor_type -> numpy dtype; 1.x spells UInt as Uint
DTYPES = {"Int8": np.int8, "Int16": np.int16, "Int32": np.int32, "Int64": np.int64, "UInt8": np.uint8,
          "Uint8": np.uint8, "UInt16": np.uint16, "Uint16": np.uint16, "UInt32": np.uint32, "Uint32": np.uint32,
          "UInt64": np.uint64, "Uint64": np.uint64, "Float16": np.float16, "Float32": np.float32,
          "Float64": np.float64, "Bool": np.bool_}


@dataclass
class Checkpoint:
    path: Path
    params: dict[str, np.ndarray]
    skipped: list[str] = field(default_factory=list)  # values that are no tensors the reader makes (maps, strings)
    crc: str = "none"  # none | verified


def read_ckpt(path) -> Checkpoint:
    path = Path(path)
    raw = read_regular(path, "MindSpore checkpoint", MAX_FILE_BYTES)
    if not raw:
        raise InputError(path, "an empty file, not a MindSpore checkpoint")
    crc = "none"
    if len(raw) >= 17 and raw[-17:-10] == CRC_MARK:
        body, stored = raw[:-17], int.from_bytes(raw[-10:], "big")
        if zlib.crc32(body) != stored:
            raise InputError(path, f"CRC mismatch: the file says {stored}, its bytes give {zlib.crc32(body)} "
                                   "(damaged or truncated)")
        raw, crc = body, "verified"
    msg = _Checkpoint()
    try:
        msg.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise InputError(path, f"not a MindSpore checkpoint (protobuf: {err}); it may be encrypted (MindSpore's "
                               "enc_key) or truncated") from None
    if not len(msg.value):
        raise InputError(path, "holds no values: not a MindSpore checkpoint (or encrypted)")
    params: dict[str, np.ndarray] = {}
    pieces: dict[str, tuple[str, list[int], list[bytes]]] = {}
    order, skipped = [], []
    for i, value in enumerate(msg.value):
        if not value.tag:
            raise InputError(path, f"value {i} has no tag: not a MindSpore checkpoint")
        if value.HasField("maptensor"):
            skipped.append(f"{value.tag} (a map tensor)")
            continue
        t = value.tensor
        if not t.tensor_type:
            raise InputError(path, f"{value.tag}: no tensor_type")
        if t.tensor_type == "str":
            skipped.append(f"{value.tag} (a string)")
            continue
        dims = list(t.dims)
        if value.tag in pieces and pieces[value.tag][:2] == (t.tensor_type, dims):
            pieces[value.tag][2].append(t.tensor_content)  # the next slice of a split parameter
            continue
        if value.tag in pieces:
            raise InputError(path, f"{value.tag}: appears twice with different types or dims")
        pieces[value.tag] = (t.tensor_type, dims, [t.tensor_content])
        order.append(value.tag)
    for tag in order:
        kind, dims, chunks = pieces[tag]
        params[tag] = _array(path, tag, kind, dims, b"".join(chunks))
    return Checkpoint(path, params, skipped, crc)


def _array(path: Path, tag: str, kind: str, dims: list[int], content: bytes) -> np.ndarray:
    if kind == "BFloat16":
        dtype = np.dtype("<u2")
    elif kind in DTYPES:
        dtype = np.dtype(DTYPES[kind]).newbyteorder("<")
    else:
        raise InputError(path, f"{tag}: tensor type '{kind}' is not read (known: {', '.join(sorted(set(DTYPES)))}, "
                               "BFloat16)")
    if len(dims) > MAX_RANK or any(d < 0 for d in dims):
        raise InputError(path, f"{tag}: dims {dims[:MAX_RANK + 1]}")
    shape = [] if dims == [0] else dims  # MindSpore stores a 0-d tensor with dims [0]
    count = math.prod(shape)  # a Python int: dims whose product overflows int64 still compare exactly below
    if count * dtype.itemsize != len(content):
        raise InputError(path, f"{tag}: {len(content)} bytes do not match dims {dims} of {kind} "
                               f"({count * dtype.itemsize} bytes)")
    arr = np.frombuffer(content, dtype).reshape(shape)
    if kind == "BFloat16":  # the upper half of a float32
        return (arr.astype(np.uint32) << 16).view(np.float32).copy()
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_ckpt(path, params: dict[str, np.ndarray], version: str = "1.x", slice_bytes: int = 1 << 20,
               crc: bool | None = None) -> Path:
    """Write ``params`` as MindSpore does: one ``Checkpoint`` message per value, parameters larger than
    ``slice_bytes`` split into slices (1.x), tensor types in ``version``'s spelling, and (2.x, or ``crc=True``) the
    ``crc_num`` trailer."""
    names = {np.dtype(v): k for k, v in DTYPES.items() if not (k.startswith("UInt") if version == "1.x"
                                                                else k.startswith("Uint"))}
    out = bytearray()
    for tag, arr in params.items():
        arr = np.asarray(arr)
        kind = names[arr.dtype]
        data = np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes()
        dims = list(arr.shape) if arr.ndim else [0]
        chunks = [data[i:i + slice_bytes] for i in range(0, len(data), slice_bytes)] or [b""]
        for chunk in chunks:
            msg = _Checkpoint()
            v = msg.value.add(tag=tag)
            v.tensor.dims.extend(dims)
            v.tensor.tensor_type = kind
            v.tensor.tensor_content = chunk
            out += msg.SerializeToString()
    if crc if crc is not None else version != "1.x":
        out += CRC_MARK + zlib.crc32(bytes(out)).to_bytes(10, "big")
    with atomic_file(path) as f:
        f.write(bytes(out))
    return Path(path)
