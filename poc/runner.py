"""Stage 6: run a compiled model over input files, with ais_bench's command line and output layout.

An ``.om`` model goes to ``python3 -m ais_bench`` with the same arguments; an ``.onnx`` model runs here on
ONNX Runtime and behaves like ais_bench where a user can see it: the input files (natural order) are grouped
into batches of ``model input bytes / file bytes``, a short last batch is padded with copies of its first file
(no outputs written for the padding), outputs go to ``{output}/{output_dirname}/{stem}_{i}.{txt|npy|bin}``, and
the summary (compute time, throughput) is printed and written beside the folder as ``{dirname}_summary.json``.

Files are read ahead by a background thread and outputs written by another, so the model never waits on disk.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import InputError, ToolError, atomic_dir, atomic_file
from .naming import natural_key
from .progress import Log

OUTFMTS = ("TXT", "NPY", "BIN")
PREFETCH_BATCHES = 4


class OnnxRuntimeBackend:
    """The CPU backend, as a backend is in the MLPerf inference reference: name, version, load, predict."""

    def name(self) -> str:
        return "onnxruntime"

    def version(self) -> str:
        return ort.__version__

    def load(self, model_path, threads: int = 0, spin: bool = True) -> "OnnxRuntimeBackend":
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        if not spin:  # idle pool threads sleep instead of spinning (needed when two sessions take turns)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - any load failure is one line about this file
            raise InputError(model_path, f"ONNX Runtime cannot load it ({str(err).splitlines()[0][:160]})") from None
        self.inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]
        return self

    def predict(self, feed: dict) -> list[np.ndarray]:
        return self.session.run(self.outputs, feed)


@dataclass
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


_ORT_TYPES = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float)": np.float32,
              "tensor(float16)": np.float16, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


def input_spec(backend: OnnxRuntimeBackend, model_path, batchsize: int | None) -> InputSpec:
    if len(backend.inputs) != 1:
        raise InputError(model_path, f"has {len(backend.inputs)} inputs; the runner feeds single-input models")
    node = backend.inputs[0]
    if node.type not in _ORT_TYPES:
        raise InputError(model_path, f"input type {node.type} is not supported")
    shape = list(node.shape)
    if not isinstance(shape[0], int):
        shape[0] = batchsize or 1  # a dynamic batch: --batchsize fixes it
    if not all(isinstance(d, int) and d > 0 for d in shape):
        raise InputError(model_path, f"input shape {node.shape} is dynamic beyond the batch; compile it with "
                                     "atc_convert.sh first")
    return InputSpec(node.name, np.dtype(_ORT_TYPES[node.type]), tuple(shape))


# --- inputs ----------------------------------------------------------------------------------------------

def list_inputs(spec: str) -> list[Path]:
    """``--input``: folders and/or files, comma-separated; folders expand to their .bin/.npy files, natural order."""
    files: list[Path] = []
    for part in (p for p in spec.split(",") if p.strip()):
        path = Path(part.strip())
        if path.is_dir():
            files += sorted((f for f in path.iterdir() if f.suffix in (".bin", ".npy") and f.is_file()),
                            key=natural_key)
        elif path.is_file():
            if path.suffix not in (".bin", ".npy"):
                raise InputError(path, "input files must be .bin or .npy")
            files.append(path)
        else:
            raise InputError(path, "no such input file or folder")
    if not files:
        raise InputError(spec, "no .bin or .npy input files")
    return files


def read_input(path: Path, dtype: np.dtype) -> bytes:
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.dtype != dtype:
            raise InputError(path, f"dtype {arr.dtype}, but the model input is {dtype}")
        return np.ascontiguousarray(arr).tobytes()
    return path.read_bytes()


def file_bytes(files: list[Path], spec: InputSpec) -> int:
    """The size every input file must have, from the first one; every .bin file is checked up front (a stat
    each), so a bad one stops the run before it starts. (.npy files are checked as they are read.)"""
    first = len(read_input(files[0], spec.dtype))
    if not first or spec.nbytes % first:
        raise InputError(files[0], f"{first} bytes does not divide the model input's {spec.nbytes} bytes "
                                   f"({spec.dtype} {list(spec.shape)})")
    if spec.shape[0] % (spec.nbytes // first):
        raise InputError(files[0], f"{spec.nbytes // first} files per batch do not split the model batch "
                                   f"{spec.shape[0]}")
    for f in files:
        if f.suffix == ".bin" and f.stat().st_size != first:
            raise InputError(f, f"{f.stat().st_size} bytes, but {files[0].name} has {first}: input files must all "
                                "be the same size")
    return first


# --- outputs ---------------------------------------------------------------------------------------------

def format_txt(arr: np.ndarray) -> str:
    """ais_bench's TXT: each value printed %f and followed by a space, one line per row."""
    rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr.reshape(1, -1)
    line = "%f " * rows.shape[1]
    return "".join(line % tuple(r) + "\n" for r in rows.tolist())


def write_output(path: Path, arr: np.ndarray, fmt: str) -> None:
    if fmt == "TXT":
        path.write_text(format_txt(arr))
    elif fmt == "NPY":
        np.save(path, arr)
    else:
        path.write_bytes(np.ascontiguousarray(arr).tobytes())


def output_folder(output, dirname) -> Path | None:
    if output is None:
        return None
    name = dirname or time.strftime("%Y_%m_%d-%H_%M_%S")  # ais_bench's default: a timestamped folder
    return Path(output) / name


# --- statistics ------------------------------------------------------------------------------------------

def stats(ms: list[float]) -> dict:
    a = np.asarray(ms if ms else [0.0])
    return {"min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()), "median": float(np.median(a)),
            "percentile(99%)": float(np.percentile(a, 99)), "count": len(ms)}


def _fmt(name: str, s: dict) -> str:
    return (f"[INFO] {name} (ms): min = {s['min']:.4f}, max = {s['max']:.4f}, mean = {s['mean']:.4f}, "
            f"median = {s['median']:.4f}, percentile(99%) = {s['percentile(99%)']:.4f}")


def print_summary(summary: dict, batch: int) -> None:
    """ais_bench's closing lines."""
    print("[INFO] -----------------Performance Summary------------------")
    for key in ("H2D_latency", "NPU_compute_time", "D2H_latency"):
        if key in summary:
            print(_fmt(key, summary[key]))
    print(f"[INFO] throughput 1000*batchsize.mean({batch})/NPU_compute_time.mean("
          f"{summary['NPU_compute_time']['mean']:.4f}): {summary['throughput']:.4f}")
    print("[INFO] ------------------------------------------------------", flush=True)


# --- the run ---------------------------------------------------------------------------------------------

def run(args, log: Log, show_summary: bool = True) -> dict:
    backend = OnnxRuntimeBackend().load(args.model, args.threads)
    spec = input_spec(backend, args.model, args.batchsize)
    batch = spec.shape[0]
    if args.batchsize and args.batchsize != batch:
        log(f"--batchsize {args.batchsize} differs from the model's batch {batch}; using {batch}")
    log(f"model {args.model}: input {spec.name} {spec.dtype} {list(spec.shape)}, runtime "
        f"{backend.name()} {backend.version()} on the CPU (--device {args.device} ignored)")
    out_dir = output_folder(args.output, args.output_dirname)
    h2d, compute, d2h, files_info = [], [], [], {}

    if args.input:
        files = list_inputs(args.input)
        each = file_bytes(files, spec)
        per_batch = spec.nbytes // each
        groups = [files[i:i + per_batch] for i in range(0, len(files), per_batch)]
        log(f"{len(files)} input files, {per_batch} per batch -> {len(groups)} batches"
            + (f" (last one padded with {per_batch - len(groups[-1])} copies)" if len(groups[-1]) < per_batch else ""))
    else:
        files, per_batch = [], 1
        groups = [None] * args.loop
        log(f"pure inference: {args.loop} loops of {args.pure_data_type} input, {args.warmup_count} warm-up")

    # pure inference feeds one batch, made once, as ais_bench does
    pure_data = (np.random.default_rng(0).integers(0, 256, spec.shape).astype(spec.dtype)
                 if args.pure_data_type == "random" else np.zeros(spec.shape, spec.dtype))

    def make_batch(group):
        t0 = time.perf_counter()
        if group is None:
            data, real = pure_data, 0
        else:
            blobs = [read_input(f, spec.dtype) for f in group]
            for f, b in zip(group, blobs):
                if len(b) != each:
                    raise InputError(f, f"{len(b)} bytes, but {files[0].name} has {each}")
            real = len(blobs)
            blobs += [blobs[0]] * (per_batch - real)  # pad a short last batch with its first file
            data = np.frombuffer(b"".join(blobs), spec.dtype).reshape(spec.shape)
        return data, group, real, (time.perf_counter() - t0) * 1000

    for _ in range(args.warmup_count):  # not counted
        backend.predict({spec.name: pure_data})

    read_q: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
    write_q: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES * 2)
    errors: list[BaseException] = []

    def reader():
        try:
            for group in groups:
                if errors:
                    break
                read_q.put(make_batch(group))
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            errors.append(err)
        read_q.put(None)

    def writer():
        try:
            while (item := write_q.get()) is not None:
                outputs, group, real, index = item
                t0 = time.perf_counter()
                rows = batch // per_batch
                outfiles = []
                for k, f in enumerate(group[:real]):
                    for oi, out in enumerate(outputs):
                        name = f"{f.stem}_{oi}.{args.outfmt.lower()}"
                        write_output(write_dir / name, out[k * rows:(k + 1) * rows], args.outfmt)
                        outfiles.append(str(out_dir / name))
                files_info[str(index)] = {"infile": [str(f) for f in group[:real]], "outfile": outfiles}
                d2h.append((time.perf_counter() - t0) * 1000)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)
            while write_q.get() is not None:  # drain so the main thread never blocks
                pass

    # Outputs go to a temporary folder that replaces {output}/{output_dirname} whole at the end: a failed run
    # leaves the previous outputs (or none), never a half-written set, and no stale file survives a re-run.
    with contextlib.ExitStack() as stack:
        write_dir = stack.enter_context(atomic_dir(out_dir)) if out_dir is not None else None
        threads = [threading.Thread(target=reader, daemon=True)]
        write_outputs = out_dir is not None and args.input
        if write_outputs:
            threads.append(threading.Thread(target=writer, daemon=True))
        for t in threads:
            t.start()
        bar = log.bar(total=len(files) if args.input else len(groups), desc="infer", unit="img" if args.input else "loop")
        start = time.perf_counter()
        index = 0
        while (item := read_q.get()) is not None:
            data, group, real, h2d_ms = item
            t0 = time.perf_counter()
            outputs = backend.predict({spec.name: data})
            compute.append((time.perf_counter() - t0) * 1000)
            h2d.append(h2d_ms)
            if write_outputs:
                write_q.put((outputs, group, real, index))
            bar.update(real if args.input else 1)
            index += 1
        if write_outputs:
            write_q.put(None)
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        bar.close()
        if errors:
            raise errors[0]

    throughput = 1000 * batch / np.mean(compute) if compute else 0.0
    summary = {
        "NPU_compute_time": stats(compute), "H2D_latency": stats(h2d), "D2H_latency": stats(d2h),
        "throughput": float(throughput), "batchsize": batch,
        "e2e": {"files": len(files), "batches": len(compute), "wall_s": wall,
                "images_per_s": (len(files) if args.input else len(compute) * batch) / wall if wall else 0.0},
        "device": f"CPU ({backend.name()} {backend.version()}, CPUExecutionProvider): the NPU_* and H2D/D2H "
                  "figures are CPU times (H2D = reading and batching the input files, D2H = writing outputs)",
        "args": {k: v for k, v in vars(args).items() if k != "quiet"},
        "filesinfo": files_info,
    }
    if show_summary:
        print_summary(summary, batch)
    log(f"end to end: {summary['e2e']['images_per_s']:.1f} images/s over {wall:.1f} s "
        + (f"({len(files)} files read, {sum(len(v['outfile']) for v in files_info.values())} outputs written"
           + (f" to {out_dir})" if write_outputs else ")") if args.input else "(pure inference)"))
    if out_dir is not None:
        path = out_dir.parent / f"{out_dir.name}_summary.json"
        with atomic_file(path, "w") as f:
            json.dump(summary, f, indent=2)
        log(f"summary: {path}")
    return summary


# --- command line ----------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="infer.sh", description="Stage 6: batch inference with ais_bench's arguments. An .om model runs "
        "python3 -m ais_bench; an .onnx model runs on ONNX Runtime on the CPU with the same file layout.")
    p.add_argument("--model", "-m", required=True, help=".om (ais_bench) or .onnx (CPU runner)")
    p.add_argument("--input", "-i", default=None, help="folders or comma-separated .bin/.npy files; "
                                                       "none: pure inference")
    p.add_argument("--output", "-o", default=None, help="output root; none: outputs are not written")
    p.add_argument("--output_dirname", default=None, help="sub-folder of --output (default: a timestamp)")
    p.add_argument("--outfmt", default="BIN", type=str.upper, choices=OUTFMTS, help="(default: BIN)")
    p.add_argument("--loop", "-l", type=int, default=1, help="pure-inference loops (default: 1)")
    p.add_argument("--warmup_count", type=int, default=1, help="warm-up runs, not counted (default: 1)")
    p.add_argument("--batchsize", type=int, default=None, help="batch of a dynamic-batch model; checked otherwise")
    p.add_argument("--device", "-d", type=int, default=0, help="NPU id (ignored on the CPU) (default: 0)")
    p.add_argument("--pure_data_type", choices=("zero", "random"), default="zero",
                   help="pure-inference input (default: zero)")
    p.add_argument("--threads", type=int, default=0, help="CPU only: ONNX Runtime intra-op threads (0: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines (the summary still prints)")
    return p


def ais_bench_args(argv: list[str]) -> list[str]:
    """The command line as given, less the CPU runner's own flags (--quiet, --threads N)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--threads":
            skip = True
        elif a != "--quiet" and not a.startswith("--threads="):
            out.append(a)
    return out


def run_ais_bench(model, ais_args: list[str], log: Log) -> int:
    """``python3 -m ais_bench ...`` with an interpreter that can import it: this one, else python3 on PATH."""
    for py in (sys.executable, "python3"):
        try:
            found = subprocess.run([py, "-c", "import ais_bench"], capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            found = False
        if found:
            cmd = [py, "-m", "ais_bench", *ais_args]
            log("backend: ascend (ais_bench), running: " + " ".join(cmd))
            return subprocess.call(cmd)
    raise ToolError(f"{model}: an .om model runs on ais_bench, which is not installed (pip install the ais_bench "
                    "wheel from the Ascend tools repository); an .onnx model runs on the CPU")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    log = Log(args.quiet, "infer")
    model = Path(args.model)
    if not model.is_file():
        raise InputError(model, "no such model file")
    if model.suffix == ".om":
        return run_ais_bench(model, ais_bench_args(argv), log)
    if model.suffix != ".onnx":
        raise InputError(model, "expected an .om (ais_bench) or .onnx (CPU) model")
    if args.loop < 1 or args.warmup_count < 0:
        raise InputError("--loop", "--loop must be >= 1 and --warmup_count >= 0")
    log("backend: cpu (ONNX Runtime runner; the model is .onnx)")
    run(args, log)
    return 0


if __name__ == "__main__":
    from .errors import run_main
    run_main(main)
