"""The files the stages hand each other: normalisation of images, ais_bench's natural file order, the label
file, the preprocessed image bins and ais_bench's output formats (TXT / NPY / BIN)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import CLASS_NAMES, IMAGE_CHANNELS, IMAGE_HW, MEAN_RGB_255, STD_RGB_255
from .errors import InputError, first_line, read_regular, regular_file

OUTFMTS = ("TXT", "NPY", "BIN")
# ais_bench's output names: {input stem}_{output index}.{txt|npy|bin}
OUTPUT_NAME_RE = re.compile(r"^(?P<stem>.+)_(?P<index>[0-9]+)\.(?P<ext>txt|npy|bin)$")
_DIGITS = re.compile(r"([0-9]+)")  # ASCII digits only: str.isdigit() also takes '²', which int() refuses


# --- images ----------------------------------------------------------------------------------------------

def normalise(chw_uint8: np.ndarray, mean=MEAN_RGB_255, std=STD_RGB_255) -> np.ndarray:
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


def read_image_bins(bins_dir, labels_path, limit: int, hw: int = IMAGE_HW) -> tuple[np.ndarray, np.ndarray | None]:
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

def find_outputs(result_dir) -> dict[str, Path]:
    """{image stem: file} for output 0 of every image; summary JSON and foreign files are ignored."""
    result_dir = Path(result_dir)
    if not result_dir.is_dir():
        raise InputError(result_dir, "no such result folder")
    found: dict[str, Path] = {}
    for path in result_dir.iterdir():
        m = OUTPUT_NAME_RE.match(path.name)
        if not m or int(m.group("index")) != 0 or not path.is_file():
            continue
        stem = m.group("stem")
        if stem in found:
            raise InputError(path, f"a second output for {stem} (also {found[stem].name})")
        found[stem] = path
    return found


@dataclass
class LabelledOutputs:
    """Output 0 of every labelled image, in natural order: stems, scores [images, classes], labels."""
    stems: list[str]
    scores: np.ndarray
    labels: np.ndarray
    missing: list[str]  # labelled images without an output

    @property
    def num_classes(self) -> int:
        return self.scores.shape[1]


def read_labelled_outputs(result_dir, label_path, allow_missing: bool = False, log=None) -> LabelledOutputs:
    """The outputs of an inference run beside their labels, strictly: no output without a label, every labelled
    image with one (unless ``allow_missing``), the same length everywhere, finite values, labels within it."""
    labels = read_labels(label_path)
    outputs = find_outputs(result_dir)
    unlabelled = sorted(set(outputs) - set(labels))
    if unlabelled:
        raise InputError(outputs[unlabelled[0]], f"an output without a label in {label_path} "
                                                 f"({len(unlabelled)} such: {', '.join(unlabelled[:3])})")
    missing = sorted(set(labels) - set(outputs), key=natural_key)
    if missing and not allow_missing:
        raise InputError(result_dir, f"no output for {len(missing)} labelled images: {', '.join(missing[:5])}"
                                     + (" ..." if len(missing) > 5 else "") + " (--allow_missing to score the rest)")
    if missing and log:
        log(f"warning: {len(missing)} labelled images have no output; scoring the {len(outputs)} that do")
    if not outputs:
        raise InputError(result_dir, "no output files (name_0.txt|npy|bin)")
    stems = sorted(outputs, key=natural_key)
    vectors = [read_output_vector(outputs[s]) for s in (log.bar(stems, desc="read outputs") if log else stems)]
    num_classes = len(vectors[0])
    for s, v in zip(stems, vectors, strict=False):
        if len(v) != num_classes:
            raise InputError(outputs[s], f"{len(v)} values, but {outputs[stems[0]].name} has {num_classes}")
        if not np.isfinite(v).all():
            raise InputError(outputs[s], "holds NaN or infinite values")
    y = np.array([labels[s] for s in stems])
    if y.max() >= num_classes:
        bad = stems[int(np.argmax(y >= num_classes))]
        raise InputError(label_path, f"label {labels[bad]} of {bad} is outside the {num_classes} output classes")
    return LabelledOutputs(stems, np.stack(vectors), y, missing)


def format_txt(arr: np.ndarray) -> bytes:
    """ais_bench's TXT: one line per row of the last axis, each value printed ``%f`` (``%d`` for an integer
    output) and followed by a space. Formatted for the whole array at once (no per-value Python work)."""
    rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr.reshape(1, -1)
    if rows.dtype.kind == "f" and (fixed := _txt_of_digits(rows)) is not None:
        return fixed
    fmt = "%d " if rows.dtype.kind in "iub" else "%f "
    line = fmt * rows.shape[1] + "\n"
    return ((line * rows.shape[0]) % tuple(rows.ravel().tolist())).encode()


def _txt_of_digits(rows: np.ndarray) -> bytes | None:
    """``format_txt`` of float rows whose values all lie in [0, 10) (a softmax's, the usual output), written digit by
    digit with numpy: each value is then 9 bytes, ``d.dddddd ``. Far less CPU than printf-style formatting (measured:
    docs/PERFORMANCE.md), which at the runner's rate comes out of the engine's cores. None (format as usual) for
    anything else, and where a value's scaled form lies too near a half for its rounding to be sure to match ``%f``'s
    (correct rounding of the exact value, ties to even)."""
    values = rows.astype(np.float64)  # exact for float32 and float16
    if values.size == 0 or not np.isfinite(values).all() or np.signbit(values).any():
        return None  # a NaN, an infinity or a minus sign (-0.0 too: "%f" prints "-0.000000")
    scaled = values * 1e6  # within 1e-9 of the exact product below 1e7
    units = np.rint(scaled)
    if units.max() >= 1e7 or (np.abs(scaled - np.floor(scaled) - 0.5) < 1e-7).any():
        return None
    digits = units.astype(np.int64).reshape(-1)
    text = np.empty((digits.size, 9), np.uint8)
    text[:, 8] = ord(" ")
    for col in range(7, 1, -1):  # the six decimals, last first
        text[:, col] = digits % 10 + ord("0")
        digits //= 10
    text[:, 1] = ord(".")
    text[:, 0] = digits + ord("0")
    lines = np.empty((rows.shape[0], rows.shape[1] * 9 + 1), np.uint8)
    lines[:, :-1] = text.reshape(rows.shape[0], -1)
    lines[:, -1] = ord("\n")
    return lines.tobytes()


# The runner reads and writes a file per image, at over 1,000 images/s on two cores that the engine needs too; Python's
# buffered open() makes five system calls and two objects a file, these three and none.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def read_small_file(path, expected: int) -> bytes:
    """A whole file that should hold ``expected`` bytes: one read of ``expected + 1`` (a regular file's read stops
    short only at its end, so one call tells a file of that size, a shorter one and a longer one apart), then the
    rest if it is longer."""
    fd = os.open(path, _READ_FLAGS)
    try:
        data = os.read(fd, expected + 1)
        if len(data) > expected:
            chunks = [data]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def write_file(path, data: bytes) -> None:
    """``data`` into ``path``, created or truncated."""
    fd = os.open(path, _WRITE_FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as err:  # os.write names no file: a full disk should say which
        raise OSError(err.errno, err.strerror, str(path)) from None
    finally:
        os.close(fd)


def write_output(path: Path, arr: np.ndarray, fmt: str) -> None:
    if fmt == "TXT":
        write_file(path, format_txt(arr))
    elif fmt == "NPY":
        np.save(path, arr)
    else:
        write_file(path, np.ascontiguousarray(arr).tobytes())


MAX_OUTPUT_BYTES = 64 << 20  # one output of a classifier: a million classes in TXT is 9 MB


def load_npy(path, what: str, max_bytes: int) -> np.ndarray:
    """A .npy array without pickles, mapped first so that a header claiming more than the file holds is refused
    before anything is allocated."""
    regular_file(path, what, max_bytes)
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.array(arr) if isinstance(arr, np.memmap) else arr


def read_output_vector(path: Path) -> np.ndarray:
    """One output file as a float64 vector (BIN outputs are float32, as the model writes them)."""
    what = "inference output file"
    try:
        if path.suffix == ".txt":
            return np.array(read_regular(path, what, MAX_OUTPUT_BYTES).decode("utf-8").split(), dtype=np.float64)
        if path.suffix == ".npy":
            arr = load_npy(path, what, MAX_OUTPUT_BYTES)
            if not isinstance(arr, np.ndarray) or arr.dtype.fields is not None or arr.dtype.kind not in "iufb":
                raise InputError(path, f"not a numeric array (dtype {getattr(arr, 'dtype', type(arr).__name__)})")
            return arr.astype(np.float64).ravel()
        raw = read_regular(path, what, MAX_OUTPUT_BYTES)
        if len(raw) % 4:
            raise InputError(path, f"{len(raw)} bytes is not a whole number of float32 values")
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)
    except (ValueError, OSError, UnicodeDecodeError, EOFError) as err:
        raise InputError(path, f"unreadable output ({first_line(err, 100)})") from None


def agreement(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """Top-1 agreement (%) and mean cosine of two models' outputs for the same images (rows)."""
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-12)
    return float((ref.argmax(1) == got.argmax(1)).mean() * 100), float(cos.mean())
