"""The data the stages hand each other before inference: normalisation of images, natural file order, text files
read with a bound, the label file and the class names, and the preprocessed image bins (``bin_data/``)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from poc.config import CLASS_NAMES, IMAGE_CHANNELS
from poc.shared.errors import InputError, read_regular

_DIGITS = re.compile(r"([0-9]+)")  # ASCII digits only: str.isdigit() also takes '²', which int() refuses


# --- images ----------------------------------------------------------------------------------------------

def normalise(chw_uint8: np.ndarray, mean, std) -> np.ndarray:
    """uint8 [n,3,H,W] RGB -> float32 ``(x/255 - mean) / std``, the model's input (mean/std on 0..255)."""
    m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    return ((chw_uint8.astype(np.float32) - m) / s).astype(np.float32)


def spread_sample(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` distinct indices, deterministic for ``seed``, taken round-robin over the classes.

    Each round takes one not-yet-used image from every class (classes in a seeded order), so any prefix of
    the result covers the classes as evenly as the data allows.
    """
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    rounds = max(len(p) for p in per_class)
    order = [p[r] for r in range(rounds) for p in per_class if r < len(p)]
    return np.asarray(order[:count], dtype=np.int64)


# --- order and labels ------------------------------------------------------------------------------------

def natural_key(path) -> tuple:
    """Sort key for a path or a name, as ais_bench orders its inputs: img2 before img10, case ignored."""
    name = getattr(path, "name", str(path))
    parts = [int(t) if t.isascii() and t.isdigit() else t.lower() for t in _DIGITS.split(name)]
    return (parts, name)


MAX_TEXT_BYTES = 16 << 20  # a label file for a million images; configs, split files and index.txt are far smaller


def read_text_file(path, what: str, encoding: str = "utf-8", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text of ``path``: a missing file, a folder, a FIFO or device, more than ``max_bytes`` or bytes that are
    not ``encoding`` are one line naming it."""
    try:
        return read_regular(path, what, max_bytes).decode(encoding)
    except UnicodeDecodeError:
        name = encoding.upper()
        raise InputError(path, f"not {'an' if name[0] in 'AEIO' else 'a'} {name} text file ({what} expected)") from None


def read_labels(path) -> dict[str, int]:
    """``img_label.txt``: one ``name label`` pair a line, labels non-negative decimal integers."""
    path = Path(path)
    text = read_text_file(path, "label file ('img{i} {label}' lines)")
    labels: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9]{1,9}", parts[1]):  # a class index, not a 2**70
            raise InputError(path, f"line {n}: expected 'img{{i}} {{label}}' with a label 0..999999999, "
                                   f"found {line.strip()[:60]!r}")
        if parts[0] in labels:
            raise InputError(path, f"line {n}: {parts[0]} is labelled twice")
        labels[parts[0]] = int(parts[1])
    if not labels:
        raise InputError(path, "no labels")
    return labels


def class_names_path(label_path) -> Path:
    """Where preprocess writes the class names: ``class_names.txt`` beside the label file."""
    return Path(label_path).with_name(CLASS_NAMES)


def class_names_text(names, source) -> str:
    """The names as ``class_names.txt`` holds them; a name that is not one non-empty line is refused (``source``
    is the file it came from)."""
    for name in names:
        if not name.strip() or len(name.splitlines()) != 1:
            raise InputError(source, f"a class name must be one non-empty line, found {name[:40]!r}")
    return "".join(f"{name}\n" for name in names)


def read_class_names(path, num_classes: int | None = None) -> list[str]:
    """``class_names.txt``: one name a line, in class-index order; with ``num_classes``, exactly that many."""
    path = Path(path)
    names = read_text_file(path, "class names file (one name a line)").splitlines()
    if not names or any(not n.strip() for n in names):
        raise InputError(path, "expected one non-empty class name a line" + ("" if names else ", found none"))
    if num_classes is not None and len(names) != num_classes:
        raise InputError(path, f"{len(names)} class names, but the outputs have {num_classes} classes")
    return names


def class_names_for(label_path, given=None, num_classes: int | None = None) -> list[str] | None:
    """The class names of a run: ``given`` (a file), else ``class_names.txt`` beside the label file when preprocess
    wrote one, else None (classes go by index)."""
    if given is None and class_names_path(label_path).is_file():
        given = class_names_path(label_path)
    return read_class_names(given, num_classes) if given is not None else None


def read_image_bins(bins_dir, labels_path, limit: int, hw: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Up to ``limit`` preprocessed images (uint8 HWC bins of ``hw`` x ``hw``, natural order) and their labels when
    the label file exists and labels them all."""
    files = sorted((p for p in Path(bins_dir).glob("*.bin") if p.is_file()), key=natural_key)[:limit]
    images = np.zeros((len(files), hw, hw, IMAGE_CHANNELS), np.uint8)
    want = hw * hw * IMAGE_CHANNELS
    for i, path in enumerate(files):
        raw = path.read_bytes()
        if len(raw) != want:
            raise InputError(path, f"{len(raw)} bytes, expected {want} (one uint8 HWC {hw}x{hw} image)")
        images[i] = np.frombuffer(raw, np.uint8).reshape(images.shape[1:])
    labels = None
    if labels_path and Path(labels_path).is_file():
        table = read_labels(labels_path)
        if all(p.stem in table for p in files):
            labels = np.array([table[p.stem] for p in files])
    return images, labels


# --- ais_bench's output files ----------------------------------------------------------------------------
