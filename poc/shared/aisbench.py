"""The ais_bench contract, in one place: which of its flags the CPU runner takes, its output names and formats
(TXT / NPY / BIN), the output folder's layout (one folder per device), the statistics block and the lines it prints,
the summary JSON; reading an input or output file with a bound, the outputs of a run beside their labels, and how two
runs' outputs agree."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poc.config import SUMMARY_SUFFIX
from poc.shared.bins import natural_key, read_labels
from poc.shared.errors import InputError, first_line, read_regular, regular_file

OUTFMTS = ("TXT", "NPY", "BIN")
# ais_bench's output names: {input stem}_{output index}.{txt|npy|bin}
OUTPUT_NAME_RE = re.compile(r"^(?P<stem>.+)_(?P<index>[0-9]+)\.(?P<ext>txt|npy|bin)$")


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


def per_class_counts(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images, right at top-1) per class."""
    return np.bincount(labels, minlength=num_classes), np.bincount(labels[pred == labels], minlength=num_classes)


def confused_pairs(labels: np.ndarray, pred: np.ndarray, num_classes: int, top: int = 10) -> list[tuple]:
    """The most frequent (true, predicted, images) among the misclassified images, most first (ties: the lower pair
    first), each with the indices of its images. Only the pairs that occur (at most one per image), not a classes
    x classes table: an output of 12,000 values would make that 1 GB."""
    wrong = np.flatnonzero(pred != labels)
    codes = labels[wrong].astype(np.int64) * num_classes + pred[wrong]
    uniq, counts = np.unique(codes, return_counts=True)
    return [(int(uniq[i] // num_classes), int(uniq[i] % num_classes), wrong[codes == uniq[i]])
            for i in np.argsort(-counts, kind="stable")[:top]]


def model_of(summary: dict | None) -> str | None:
    """The --model an inference run was given (ais_bench's summary keeps its argv as ``args``)."""
    argv = (summary or {}).get("args")
    argv = argv if isinstance(argv, list) else []
    for i, arg in enumerate(argv):
        if arg in ("--model", "-m") and i + 1 < len(argv):
            return str(argv[i + 1])
        if isinstance(arg, str) and arg.startswith("--model="):
            return arg.split("=", 1)[1]
    return None


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

# --- the command line: which flags the CPU runner takes and which it hands to ais_bench ----------------------

# ais_bench flags with no meaning for the CPU runner: accepted (so a ModelZoo command line works unchanged),
# handed to ais_bench as given for an .om, and named in one log line on the CPU. value: takes an argument.
NPU_ONLY_FLAGS = {
    "--debug": True, "--run_mode": True, "--dymBatch": True, "--dymHW": True, "--dymDims": True,
    "--dymShape": True, "--dymShape_range": True, "--outputSize": True, "--auto_set_dymshape_mode": True,
    "--auto_set_dymdims_mode": True, "--profiler": True, "--profiler_rename": True, "--dump": True,
    "--dump_npy": True, "--acl_json_path": True, "--aipp_config": True, "--energy_consumption": True,
    "--npu_id": True, "--backend": True, "--perf": True, "--pipeline": True, "--threadnum": True,
    "--divide_input": True,
}

CPU_ONLY_FLAGS = {"--quiet": 0, "--threads": 1}  # the CPU runner's own flags, not handed to ais_bench


def ais_bench_args(argv: list[str]) -> list[str]:
    """The command line as given, less the CPU runner's own flags."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        flag = a.split("=", 1)[0]
        if flag in CPU_ONLY_FLAGS:
            skip = CPU_ONLY_FLAGS[flag] if "=" not in a else 0
            continue
        out.append(a)
    return out


# --- the output layout ---------------------------------------------------------------------------------------

def default_dirname() -> str:
    """ais_bench's --output_dirname when none is given: the start time."""
    return time.strftime("%Y_%m_%d-%H_%M_%S")


def output_name(stem: str, index: int, fmt: str) -> str:
    """An output file's name: {input stem}_{output index}.{txt|npy|bin} (OUTPUT_NAME_RE reads it back)."""
    return f"{stem}_{index}.{fmt.lower()}"


def summary_path(out_dir: str) -> str:
    """Where a run's summary JSON goes: beside its output folder."""
    return f"{out_dir}{SUMMARY_SUFFIX}"


def device_dirname(device: int) -> str:
    """A device's output folder (and summary stem) under --output_dirname with --device 0,1."""
    return f"device{device}"


def device_line(index: int, device: int, throughput: float, start: float, end: float) -> str:
    return f"i:{index} device_{device} throughput:{throughput} start_time:{start} end_time:{end}"


def devices_total_line(total: float) -> str:
    return f"[INFO] summary throughput:{total}"


# --- the statistics block, its printed lines and the summary JSON --------------------------------------------

def stats(ms: list[float]) -> dict:
    """ais_bench's statistics block (zeros for an empty list, as it writes them)."""
    a = np.asarray(ms, dtype=np.float64)
    if not a.size:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0, "percentile(99%)": 0.0, "count": 0}
    return {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()), "median": float(np.median(a)),
            "percentile(99%)": float(np.percentile(a, 99)), "count": int(a.size)}


def stat_line(name: str, s: dict) -> str:
    return (f"[INFO] {name} (ms): min = {s['min']}, max = {s['max']}, mean = {s['mean']}, "
            f"median = {s['median']}, percentile(99%) = {s['percentile(99%)']}")


def print_summary(summary: dict, batch: int, display_all: bool = False) -> None:
    """ais_bench's closing lines (H2D/D2H only with --display_all_summary true, as in ais_bench)."""
    print("[INFO] -----------------Performance Summary------------------")
    if display_all and "H2D_latency" in summary:
        print(stat_line("H2D_latency", summary["H2D_latency"]))
    print(stat_line("NPU_compute_time", summary["NPU_compute_time"]))
    if display_all and "D2H_latency" in summary:
        print(stat_line("D2H_latency", summary["D2H_latency"]))
    print(f"[INFO] throughput 1000*batchsize.mean({batch})/NPU_compute_time.mean("
          f"{summary['NPU_compute_time']['mean']}): {summary['throughput']}")
    print("[INFO] ------------------------------------------------------", flush=True)


@dataclass
class RunRecord:
    """What a finished CPU run measured, for its summary JSON."""

    argv: list[str]
    batch: int
    compute_ms: list[float]  # each batch's compute time (NPU_compute_time)
    h2d_ms: list[float]  # reading and batching each batch's input files
    d2h_ms: list[float]  # writing each batch's outputs
    filesinfo: dict  # {sample index: {"infiles": [...], "outfiles": [...]}}
    files: int  # input files read (0: pure inference)
    images: int
    wall_s: float
    start_end: tuple[float, float]
    io_cpu_s: dict  # the I/O threads' CPU seconds (user, kernel): taken from the cores the engine runs on
    engine: str  # "onnxruntime 1.23.2"


def summary_json(run: RunRecord) -> dict:
    """ais_bench's summary (its keys in its order), then the CPU runner's additions."""
    st = stats(run.compute_ms)
    return {
        "filesinfo": {str(k): v for k, v in sorted(run.filesinfo.items())},
        "args": run.argv,
        "NPU_compute_time": st, "H2D_latency": stats(run.h2d_ms), "D2H_latency": stats(run.d2h_ms),
        "throughput": 1000 * run.batch / st["mean"] if st["mean"] else 0,
        "npu_compute_time_list": list(run.compute_ms),
        "pid": os.getpid(),
        "batchsize": run.batch,
        "start_time": run.start_end[0], "end_time": run.start_end[1],
        "e2e": {"files": run.files, "batches": len(run.compute_ms), "wall_s": run.wall_s,
                "images_per_s": run.images / run.wall_s if run.wall_s else 0.0, "io_cpu_s": run.io_cpu_s},
        "device": f"CPU ({run.engine}): the NPU_* and H2D/D2H figures are CPU times "
                  "(H2D = reading and batching the input files, D2H = writing outputs)",
    }
