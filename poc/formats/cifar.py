"""Safe, validated readers for the CIFAR-10 / CIFAR-100 python pickles.

The pickles hold a dict with bytes keys (they were written by Python 2). Loading a pickle can run any code
it names, so a restricted unpickler allows only the numpy reconstruction globals these files need and
refuses everything else before it is called.
"""
from __future__ import annotations

import io
import pickle
import pickletools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poc.config import IMAGE_CHANNELS
from poc.formats.image_split import ImageSplit
from poc.shared.errors import InputError, atomic_file, read_regular

CIFAR_HW = 32  # CIFAR-10 and CIFAR-100 images: 32x32 RGB, one row of 3,072 bytes (R plane, G, B)
CIFAR_BYTES = CIFAR_HW * CIFAR_HW * IMAGE_CHANNELS

# (module, name) pairs a CIFAR pickle may reference; numpy 2 moved numpy.core to numpy._core.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell bytes
}


class _Refused(pickle.UnpicklingError):
    pass


def _empty_bytes(*args):
    """How protocol 2 spells b'' (``__builtin__.bytes()``); ``bytes(N)`` from a file could allocate N bytes."""
    if args:
        raise _Refused("bytes() with arguments (not how a CIFAR pickle spells bytes)")
    return b""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in (("__builtin__", "bytes"), ("builtins", "bytes")):
            return _empty_bytes
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"refused to load global '{module}.{name}' (not a CIFAR data type)")


# Bounds checked on the opcodes before anything is built. A real CIFAR pickle nests a few levels and fetches a
# handful of memo entries; far more of either is a file built to blow up whatever walks the result (a tuple of a
# tuple ... a million deep, made by TUPLE1 alone, crashes the interpreter that frees it).
MAX_NESTING = 64
MAX_MEMO_FETCHES = 100_000
MAX_PICKLE_BYTES = 2 << 30
_FETCH_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_IN_PLACE = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}  # fill the object below their items
_MARK = -1


def check_opcodes(path: Path, raw: bytes) -> None:
    """Walk the opcodes (pickletools builds nothing) with the nesting depth of every object on the pickle's stack
    (an op that builds from popped items nests one deeper than the deepest of them, whatever the opcode), and refuse
    nesting or memo fetches beyond the bounds."""
    stack: list[int] = []
    memo: dict = {}
    fetches = 0
    try:
        for op, arg, _ in pickletools.genops(raw):
            before = [s.name for s in op.stack_before]
            if op.name in _PUT_OPS or op.name == "MEMOIZE":
                memo[len(memo) if op.name == "MEMOIZE" else arg] = stack[-1]
                continue
            if op.name in _FETCH_OPS:
                fetches += 1
                if fetches > MAX_MEMO_FETCHES:
                    raise InputError(path, f"refers to its memo more than {MAX_MEMO_FETCHES} times: not a CIFAR pickle")
                stack.append(memo.get(arg, 0))
                continue
            if op.name == "MARK":
                stack.append(_MARK)
                continue
            popped = []
            if "mark" in before:
                while stack[-1] != _MARK:
                    popped.append(stack.pop())
                stack.pop()
                popped += [stack.pop() for _ in range(before.index("mark"))]
            else:
                popped = [stack.pop() for _ in before]
            if op.name == "DUP" or op.name == "READONLY_BUFFER":
                stack += popped * len(op.stack_after)
                continue
            if op.name in _IN_PLACE:  # the container keeps its place; its depth grows only past its new items'
                depth = max(popped[-1], max(popped[:-1], default=-1) + 1)
            else:
                depth = max(popped, default=-1) + 1
            if depth > MAX_NESTING:
                raise InputError(path, f"nested more than {MAX_NESTING} levels deep: not a CIFAR pickle")
            stack += [depth] * len(op.stack_after)
    except (ValueError, EOFError, IndexError) as err:
        raise InputError(path, f"truncated or corrupt pickle ({type(err).__name__}: {err})") from None


def safe_load_pickle(path) -> object:
    """Load a pickle allowing only CIFAR's data types; any other global is refused without being run."""
    path = Path(path)
    raw = read_regular(path, "CIFAR pickle file", MAX_PICKLE_BYTES)
    check_opcodes(path, raw)
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as err:
        raise InputError(path, f"not a safe CIFAR pickle: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError,
            OverflowError, MemoryError, LookupError, RecursionError, UnicodeError) as err:
        raise InputError(path, f"truncated or corrupt pickle ({type(err).__name__}: {str(err)[:120]})") from None


@dataclass
class CifarSplit:
    """One split: ``images`` uint8 [N, 3072] (rows are R, G, B planes), ``labels`` int64 [N]."""

    path: Path
    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __len__(self) -> int:
        return len(self.labels)

    def hwc(self, index=slice(None)) -> np.ndarray:
        """Images as uint8 [n, 32, 32, 3] (HWC RGB): what a bin file and a PNG hold."""
        chw = self.images[index].reshape(-1, IMAGE_CHANNELS, CIFAR_HW, CIFAR_HW)
        return np.ascontiguousarray(chw.transpose(0, 2, 3, 1))

    def chw(self, index=slice(None)) -> np.ndarray:
        """Images as uint8 [n, 3, 32, 32] (CHW RGB)."""
        return self.images[index].reshape(-1, IMAGE_CHANNELS, CIFAR_HW, CIFAR_HW)


def _label_key(path: Path, d: dict) -> tuple[bytes, int]:
    if b"fine_labels" in d:
        return b"fine_labels", 100
    if b"labels" in d:
        return b"labels", 10
    raise InputError(path, "missing key b'fine_labels' (CIFAR-100) or b'labels' (CIFAR-10)")


def load_split(path) -> CifarSplit:
    """Read and validate one data pickle (CIFAR-100 ``test``/``train``, CIFAR-10 ``test_batch``...)."""
    path = Path(path)
    d = safe_load_pickle(path)
    if not isinstance(d, dict):
        raise InputError(path, f"expected a dict, found {type(d).__name__}")
    if b"data" not in d:
        raise InputError(path, "missing key b'data'")
    key, num_classes = _label_key(path, d)
    data = d[b"data"]
    if not isinstance(data, np.ndarray):
        raise InputError(path, f"b'data' is {type(data).__name__}, expected a numpy array")
    if data.dtype != np.uint8:
        raise InputError(path, f"b'data' has dtype {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != CIFAR_BYTES:
        raise InputError(path, f"b'data' has shape {list(data.shape)}, expected [N, {CIFAR_BYTES}]")
    size = path.stat().st_size
    if not data.flags.c_contiguous or data.nbytes > size:  # an array made without its bytes, or a strided view
        raise InputError(path, f"b'data' claims {len(data)} images ({data.nbytes} bytes) that the {size}-byte file "
                               "does not hold")
    if not len(data):
        raise InputError(path, "holds no images (an empty data set)")
    raw_labels = d[key]
    # Checked flat, item by item, before numpy sees it: numpy would recurse into (and expand) nested lists.
    if isinstance(raw_labels, list):
        if not all(type(x) is int or isinstance(x, np.integer) for x in raw_labels):
            raise InputError(path, f"{key!r} is not a list of integers")
        bad = next((i for i, x in enumerate(raw_labels) if not 0 <= x < num_classes), None)  # before numpy: 2**70
        if bad is not None:
            raise InputError(path, f"label {raw_labels[bad]} of image {bad} is outside 0..{num_classes - 1}")
        labels = np.asarray(raw_labels, dtype=np.int64) if raw_labels else np.zeros(0, np.int64)
    elif isinstance(raw_labels, np.ndarray) and raw_labels.ndim == 1 and raw_labels.dtype.kind in "iu":
        labels = raw_labels
    else:
        raise InputError(path, f"{key!r} is not a list of integers")
    if len(labels) != len(data):
        raise InputError(path, f"{len(data)} images but {len(labels)} labels in {key!r}")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise InputError(path, f"label {int(labels[bad[0]])} of image {int(bad[0])} is outside 0..{num_classes - 1}"
                               f" ({bad.size} out of range)")
    return CifarSplit(path, np.ascontiguousarray(data), labels.astype(np.int64), num_classes)


def load_class_names(meta_path) -> list[str]:
    """Fine label names from CIFAR-100 ``meta`` or CIFAR-10 ``batches.meta``."""
    meta_path = Path(meta_path)
    d = safe_load_pickle(meta_path)
    if not isinstance(d, dict):
        raise InputError(meta_path, f"expected a dict, found {type(d).__name__}")
    for key in (b"fine_label_names", b"label_names"):
        if key in d:
            names = d[key]
            if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
                raise InputError(meta_path, f"{key!r} is not a list of names")
            try:
                return [n.decode() if isinstance(n, bytes) else n for n in names]
            except UnicodeDecodeError:
                raise InputError(meta_path, f"{key!r} holds a name that is not UTF-8") from None
    raise InputError(meta_path, "missing key b'fine_label_names' (CIFAR-100) or b'label_names' (CIFAR-10)")


def meta_beside(split_path) -> Path | None:
    """The class names' file beside a split: CIFAR-100's ``meta`` or CIFAR-10's ``batches.meta`` (None: neither)."""
    for name in ("meta", "batches.meta"):
        if (found := Path(split_path).with_name(name)).is_file():
            return found
    return None


def write_split(path, images: np.ndarray, labels, coarse_labels=None, batch_label: str = "testing batch 1 of 1",
                cifar10: bool = False):
    """Write a CIFAR-100 format data pickle, or CIFAR-10's (``b'labels'``) (the demo data sets and the tests)."""
    n = len(labels)
    data = np.ascontiguousarray(images, dtype=np.uint8).reshape(n, CIFAR_BYTES)
    filenames = [f"img_{i:05d}.png".encode() for i in range(n)]
    if cifar10:  # the key order of the real files
        d = {b"batch_label": batch_label.encode(), b"labels": [int(x) for x in labels], b"data": data,
             b"filenames": filenames}
    else:
        d = {b"filenames": filenames, b"batch_label": batch_label.encode(), b"fine_labels": [int(x) for x in labels],
             b"coarse_labels": [int(x) // 5 for x in labels] if coarse_labels is None else list(coarse_labels),
             b"data": data}
    with atomic_file(path) as f:
        pickle.dump(d, f, protocol=2)


def write_meta(path, fine_names, coarse_names=None):
    """CIFAR-100's ``meta``, or CIFAR-10's ``batches.meta`` when there are no coarse names."""
    if coarse_names is None:
        d = {b"label_names": [n.encode() for n in fine_names], b"num_cases_per_batch": 10000, b"num_vis": 3072}
    else:
        d = {b"fine_label_names": [n.encode() for n in fine_names],
             b"coarse_label_names": [n.encode() for n in coarse_names]}
    with atomic_file(path) as f:
        pickle.dump(d, f, protocol=2)


def split_path(data_dir, split: str) -> Path:
    """A CIFAR split is a pickle in the data folder: ``cifar-100-python/test``, ``cifar-10-batches-py/test_batch``."""
    return Path(data_dir) / split


def open_split(path) -> ImageSplit:
    """A CIFAR pickle as an ImageSplit, with the class names of the ``meta`` / ``batches.meta`` beside it (checked
    against its class count) when there is one."""
    split = load_split(path)
    meta = meta_beside(path)
    names = load_class_names(meta) if meta else None
    if names is not None and len(names) != split.num_classes:
        raise InputError(meta, f"{len(names)} class names for the {split.num_classes} classes of {path}")
    return ImageSplit(Path(path), split.labels, split.num_classes, CIFAR_HW, lambda i: split.hwc(i)[0], names, meta,
                      read_chw=split.chw)
