"""Stage 6: run a compiled model over input files, with ais_bench's command line and output layout.

An ``.om`` model goes to ``python3 -m ais_bench`` with the arguments exactly as given; an ``.onnx`` model runs
here on ONNX Runtime and behaves like ais_bench where a user can see it: the input files (natural order) are
grouped into batches of ``model input bytes / file bytes``, a short last batch is padded with copies of its
first file (no outputs written for the padding), outputs go to
``{output}/{output_dirname}/{stem}_{i}.{txt|npy|bin}``, and the summary (compute time, throughput) is printed
and written beside the folder as ``{dirname}_summary.json``.

The run, step by step: plan the batches, read them ahead on one thread, infer on the main thread (two batches in
flight on an engine that runs them side by side), write the outputs on another thread, summarise. Nothing here
imports ONNX Runtime until an ``.onnx`` model needs it.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poc.config import OUTPUT_OWNED
from poc.engines.base import InFlight, input_spec
from poc.shared import aisbench, ascend
from poc.shared.aisbench import OUTFMTS, format_txt, load_npy, read_small_file, write_file, write_output
from poc.shared.bins import natural_key
from poc.shared.errors import InputError, OutputSet, ToolError, first_line, run_main, signals_deferred
from poc.shared.progress import Log

PREFETCH_BATCHES = 4
SWITCH_INTERVAL_S = 0.0002
INPUT_SUFFIXES = (".bin", ".npy")
MAX_NPY_INPUT_BYTES = 1 << 30  # the first .npy input, before the model's input size tells what one should hold
DEVICE_IDS = re.compile(r"[0-9]{1,3}(,[0-9]{1,3})*")  # ASCII digits only: int() also takes "1_0" and "٣"

@dataclass
class RunOptions:
    """What a run does: ais_bench's options, plus the CPU runner's own (threads, quiet)."""

    model: str
    input: str | None = None
    output: str | None = None
    output_dirname: str | None = None
    outfmt: str = "BIN"
    loop: int = 1
    warmup_count: int = 1
    batchsize: int | None = None  # the batch in the throughput line; fixes a dynamic-batch model's batch
    device: str = "0"
    pure_data_type: str = "zero"
    display_all_summary: bool = False
    output_batchsize_axis: int = 0
    threads: int = 0
    quiet: bool = False
    argv: list[str] = field(default_factory=list)  # as given, for the summary's "args"
    npu_only: list[str] = field(default_factory=list)  # ais_bench flags given that do nothing on the CPU
    files: list[str] | None = None  # a worker's share of the input files (instead of listing --input)

    @property
    def devices(self) -> list[int]:
        if not DEVICE_IDS.fullmatch(str(self.device)):
            raise InputError("--device", f"'{self.device}': expected an id or a list such as 0,1 (ASCII digits)")
        ids = [int(d) for d in str(self.device).split(",")]
        if any(not 0 <= d <= 255 for d in ids) or len(set(ids)) != len(ids):
            raise InputError("--device", f"'{self.device}': ids must be distinct, 0..255 (as in ais_bench)")
        return ids

    def validate(self) -> None:
        if self.loop < 1:
            raise InputError("--loop", f"{self.loop}: must be at least 1")
        if self.warmup_count < 0:
            raise InputError("--warmup_count", f"{self.warmup_count}: must be 0 or more")
        if self.batchsize is not None and self.batchsize < 1:
            raise InputError("--batchsize", f"{self.batchsize}: must be at least 1")
        if self.outfmt not in OUTFMTS:
            raise InputError("--outfmt", f"'{self.outfmt}' is not one of {', '.join(OUTFMTS)}")
        if self.threads < 0:
            raise InputError("--threads", f"{self.threads}: must be 0 (all cores) or more")
        if self.output_batchsize_axis < 0:
            raise InputError("--output_batchsize_axis", f"{self.output_batchsize_axis}: must be 0 or more")
        if self.output_dirname is not None and (self.output_dirname in ("", ".", "..")
                                                or os.sep in self.output_dirname):
            raise InputError("--output_dirname", f"'{self.output_dirname}': must name one sub-folder of --output")


# --- plan --------------------------------------------------------------------------------------------------

@dataclass
class Plan:
    files: list[str]  # input paths as ais_bench names them (the folder as given, joined with the file name)
    per_batch: int  # files per model batch
    file_bytes: int
    groups: list[list[str] | None]  # None: one pure-inference batch


def list_inputs(spec: str) -> list[str]:
    """``--input``: folders and/or files, comma-separated; folders expand to their .bin/.npy files, natural order."""
    files: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        path = Path(part)
        if path.is_dir():
            names = sorted((e.name for e in os.scandir(path) if Path(e.name).suffix.lower() in INPUT_SUFFIXES
                            and e.is_file()), key=natural_key)
            files += [os.path.join(part, n) for n in names]
        elif path.is_file():
            if path.suffix.lower() not in INPUT_SUFFIXES:
                raise InputError(path, "input files must be .bin or .npy")
            files.append(part)
        elif path.exists():
            raise InputError(path, "not a regular file or folder")
        else:
            raise InputError(path, "no such input file or folder")
    if not files:
        raise InputError(spec, "no .bin or .npy input files")
    return files


def read_input(path: str, dtype: np.dtype, expected: int = 0) -> bytes:
    """One input file's bytes (``expected``: the size a .bin should have, read in one call)."""
    if path[-4:].lower() == ".npy":  # a string test, not a Path per file: the reader shares the engine's cores
        try:  # an .npy's header is at most 64 KiB (format 2 and 3)
            arr = load_npy(path, "input file", expected + (64 << 10) if expected else MAX_NPY_INPUT_BYTES)
        except (ValueError, OSError, EOFError) as err:
            raise InputError(path, f"not a readable .npy array ({first_line(err, 100)})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype != dtype:
            raise InputError(path, f"dtype {getattr(arr, 'dtype', type(arr).__name__)}, but the model input is {dtype}")
        return np.ascontiguousarray(arr).tobytes()
    try:
        if expected:
            return read_small_file(path, expected)
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(path, "input file disappeared during the run") from None


def plan_batches(opts: RunOptions, spec, log: Log) -> Plan:
    if not opts.input and opts.files is None:
        log(f"pure inference: {opts.loop} loops of {opts.pure_data_type} input, {opts.warmup_count} warm-up")
        return Plan([], 1, spec.nbytes, [None] * opts.loop)
    files = opts.files if opts.files is not None else list_inputs(opts.input)
    first = len(read_input(files[0], spec.dtype))
    if not first or spec.nbytes % first:
        raise InputError(files[0], f"{first} bytes does not divide the model input's {spec.nbytes} bytes "
                                   f"({spec.dtype} {list(spec.shape)})")
    per_batch = spec.nbytes // first
    if spec.shape[0] % per_batch:
        raise InputError(files[0], f"{per_batch} files per batch do not split the model batch {spec.shape[0]}")
    for f in files:  # a stat each: a bad .bin stops the run before it starts (.npy files are checked as read)
        if Path(f).suffix.lower() == ".bin" and os.stat(f).st_size != first:
            raise InputError(f, f"{os.stat(f).st_size} bytes, but {Path(files[0]).name} has {first}: input files "
                                "must all be the same size")
    groups = [files[i:i + per_batch] for i in range(0, len(files), per_batch)]
    short = per_batch - len(groups[-1])
    log(f"{len(files)} input files, {per_batch} per batch -> {len(groups)} batches"
        + (f" (last one padded with {short} copies)" if short else "")
        + (f", each run {opts.loop} times" if opts.loop > 1 else ""))
    return Plan(files, per_batch, first, groups)


# --- read ahead, infer, write ----------------------------------------------------------------------------

@dataclass
class Batch:
    data: np.ndarray
    group: list[str] | None
    real: int  # files that get outputs (the rest is padding)
    read_ms: float
    index: int


def thread_cpu_s() -> dict:
    """The calling thread's CPU seconds so far, user and kernel (zeros where the OS does not count per thread)."""
    try:
        import resource
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        return {"user": usage.ru_utime, "kernel": usage.ru_stime}
    except (ImportError, AttributeError, OSError):
        return {"user": 0.0, "kernel": 0.0}


def read_batches(plan: Plan, spec, opts: RunOptions, out_q: queue.Queue, stop: threading.Event,
                 errors: list, io_cpu: dict) -> None:
    """The reader thread: every batch of the plan onto ``out_q``, then None; its CPU time into ``io_cpu``."""
    pure = (np.random.default_rng(0).integers(0, 256, spec.shape).astype(spec.dtype)
            if opts.pure_data_type == "random" else np.zeros(spec.shape, spec.dtype))
    try:
        for index, group in enumerate(plan.groups):
            if stop.is_set():
                break
            t0 = time.perf_counter()
            if group is None:
                batch = Batch(pure, None, 0, 0.0, index)
            else:
                blobs = [read_input(f, spec.dtype, plan.file_bytes) for f in group]
                for f, b in zip(group, blobs, strict=False):
                    if len(b) != plan.file_bytes:
                        raise InputError(f, f"{len(b)} bytes, but {Path(plan.files[0]).name} has {plan.file_bytes}")
                real = len(blobs)
                blobs += [blobs[0]] * (plan.per_batch - real)  # pad a short last batch with its first file
                data = np.frombuffer(b"".join(blobs), spec.dtype).reshape(spec.shape)
                batch = Batch(data, group, real, (time.perf_counter() - t0) * 1000, index)
            while not stop.is_set():
                try:
                    out_q.put(batch, timeout=0.2)
                    break
                except queue.Full:
                    continue
    except BaseException as err:  # noqa: BLE001 - handed to the main thread
        errors.append(err)
    finally:
        io_cpu["reader"] = thread_cpu_s()
        _put_final(out_q, stop)


def _put_final(q: queue.Queue, stop: threading.Event) -> None:
    while True:
        try:
            q.put(None, timeout=0.2)
            return
        except queue.Full:
            if stop.is_set():
                with q.mutex:
                    q.queue.clear()


@dataclass
class Written:
    filesinfo: dict = field(default_factory=dict)
    d2h_ms: list = field(default_factory=list)


def write_batches(in_q: queue.Queue, write_dir: Path, out_prefix: str, plan: Plan, opts: RunOptions,
                  written: Written, errors: list, io_cpu: dict) -> None:
    """The writer thread: each batch's outputs split per input file along the batch axis, as ais_bench does; its
    CPU time into ``io_cpu`` (the kernel's share is mostly creating the files)."""
    # plain string work per file (no Path objects, no joins): at 1,000+ files a second this thread's every cycle
    # comes out of the cores the engine runs on
    write_prefix, out_prefix = os.path.join(write_dir, ""), os.path.join(out_prefix, "")
    try:
        while (item := in_q.get()) is not None:
            batch, outputs = item
            t0 = time.perf_counter()
            stems = ([os.path.splitext(os.path.basename(f))[0] for f in batch.group[:batch.real]] if batch.group
                     else ["pure_infer_data"])
            for oi, out in enumerate(outputs):
                texts = parts = None
                if opts.outfmt == "TXT" and out.ndim == 2 and opts.output_batchsize_axis == 0 \
                        and out.shape[0] == plan.per_batch:
                    texts = format_txt(out).splitlines(keepends=True)  # one formatting call for the batch
                else:
                    if opts.output_batchsize_axis >= out.ndim:
                        raise InputError("--output_batchsize_axis", f"{opts.output_batchsize_axis}: output {oi} has "
                                                                    f"{out.ndim} axes {list(out.shape)}")
                    parts = np.array_split(out, plan.per_batch, axis=opts.output_batchsize_axis)
                for k in range(batch.real):
                    name = aisbench.output_name(stems[k], oi, opts.outfmt)
                    if texts is not None:
                        write_file(write_prefix + name, texts[k])
                    else:
                        write_output(write_dir / name, parts[k], opts.outfmt)
                    sample = written.filesinfo.setdefault(batch.index * plan.per_batch + k,
                                                          {"infiles": [batch.group[k]] if batch.group else [],
                                                           "outfiles": []})
                    sample["outfiles"].append(out_prefix + name)
            written.d2h_ms.append((time.perf_counter() - t0) * 1000)
    except BaseException as err:  # noqa: BLE001 - handed to the main thread
        errors.append(err)
        while in_q.get() is not None:  # drain so the main thread never blocks
            pass
    finally:
        io_cpu["writer"] = thread_cpu_s()


# --- the run -------------------------------------------------------------------------------------------------

def run(opts: RunOptions, log: Log, show_summary: bool = True, ready=None) -> dict:
    """Plan, read ahead, infer, write, summarise; returns the summary (what ``{dirname}_summary.json`` holds).
    ``ready()``, when given, is called after the warm-up and before the timed run (the workers' start line)."""
    from poc.engines.pick import backend_for  # here: an .om run hands off to ais_bench without loading an engine
    opts.validate()
    backend = backend_for(opts.model).load(opts.model, opts.threads)
    spec = input_spec(backend, opts.model, opts.batchsize)
    batch = opts.batchsize or spec.shape[0]
    log(f"model {opts.model}: input {spec.name} {spec.dtype} {list(spec.shape)}, runtime "
        f"{backend.name()} {backend.version()} on the CPU"
        + (f"; do nothing on the CPU: {', '.join(opts.npu_only)}" if opts.npu_only else ""))
    plan = plan_batches(opts, spec, log)
    out_dir = None
    if opts.output is not None:
        dirname = opts.output_dirname or aisbench.default_dirname()
        out_dir = os.path.join(opts.output, dirname)
    summary_path = aisbench.summary_path(out_dir) if out_dir else None
    inputs = {"--model": opts.model, **{f"--input {p}": p for p in (opts.input or "").split(",") if p.strip()}}
    outputs = OutputSet({"--output/--output_dirname": out_dir, "summary": summary_path}, inputs)
    write_outputs = out_dir is not None

    for _ in range(opts.warmup_count):  # not counted
        backend.predict({spec.name: np.zeros(spec.shape, spec.dtype)})
    if ready is not None:
        ready()

    # The I/O threads hold the GIL while they format and write; when a batch finishes, the inference thread would
    # wait for it up to the interpreter's switch interval (5 ms, a fifth of a fast batch). Ask for it back sooner.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    read_q: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
    write_q: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES * 2)
    stop, errors, written, io_cpu = threading.Event(), [], Written(), {}
    h2d = []
    with outputs:
        write_dir = outputs.folder(out_dir, OUTPUT_OWNED) if out_dir else None
        threads = [threading.Thread(target=read_batches, args=(plan, spec, opts, read_q, stop, errors, io_cpu),
                                    daemon=True)]
        if write_outputs:
            threads.append(threading.Thread(target=write_batches, daemon=True,
                                            args=(write_q, write_dir, out_dir, plan, opts, written, errors, io_cpu)))
        for t in threads:
            t.start()
        bar = log.bar(total=len(plan.files) if plan.files else len(plan.groups), desc="infer",
                      unit="img" if plan.files else "loop")
        in_flight = InFlight(backend)

        def done(collected: list) -> None:
            for (item, last_run), result in collected:
                if not last_run:
                    continue
                h2d.append(item.read_ms)
                if write_outputs and (item.group is not None or item.index == 0):
                    if item.group is None:  # pure inference writes pure_infer_data_0.{fmt} once
                        item.real = 1
                    write_q.put((item, result))
                bar.update(item.real if plan.files else 1)

        def next_batch() -> Batch | None:
            try:
                return read_q.get_nowait()
            except queue.Empty:  # the engine would wait for the reader anyway: collect what it has first, so that
                done(in_flight.collect_all())  # a batch's time ends when it is done, not when the next one is read
                return read_q.get()

        start, start_time = time.perf_counter(), time.time()
        try:
            while (item := next_batch()) is not None:
                loops = opts.loop if item.group is not None else 1  # --loop with --input runs every batch N times
                for k in range(loops):
                    done(in_flight.submit({spec.name: item.data}, (item, k == loops - 1)))
            done(in_flight.collect_all())
        finally:
            in_flight.drain()
            stop.set()
            if write_outputs:
                write_q.put(None)
            for t in threads:  # the reader and writer are stopped and joined before any temporary is removed
                t.join()
            bar.close()
            sys.setswitchinterval(switch_interval)
        wall = time.perf_counter() - start
        if errors:
            raise errors[0]
        images = len(plan.files) * opts.loop if plan.files else len(in_flight.times) * batch
        summary = aisbench.summary_json(aisbench.RunRecord(
            opts.argv, batch, in_flight.times, h2d, written.d2h_ms, written.filesinfo, len(plan.files), images, wall,
            (start_time, time.time()), io_cpu, f"{backend.name()} {backend.version()}"))
        if summary_path:
            Path(outputs.file(summary_path)).write_text(json.dumps(summary))
    if show_summary:
        aisbench.print_summary(summary, batch, opts.display_all_summary)
    n_out = sum(len(v["outfiles"]) for v in written.filesinfo.values())
    log(f"end to end: {summary['e2e']['images_per_s']:.1f} images/s over {wall:.1f} s "
        + (f"({len(plan.files)} files read, {n_out} outputs written" + (f" to {out_dir})" if write_outputs else ")")
           if plan.files else "(pure inference)"))
    if summary_path:
        log(f"summary: {summary_path}")
    return summary


# --- several devices: one worker process each, as ais_bench runs one process per NPU ------------------------

def _interrupt_once(signum, frame):
    """A worker's SIGINT / SIGTERM: the first one interrupts (its run discards its temporaries), later ones do
    nothing (a Python no-op rather than SIG_IGN: a signal already caught would otherwise be reported as a race)."""
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    raise KeyboardInterrupt


def _ignore(signum, frame):
    pass


def _worker(runs: list[tuple[int, RunOptions]], barrier, results) -> None:
    """One worker process: its devices' runs one after the other (the first starts timing with the other workers'),
    a result per run onto ``results``."""
    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    failed = None
    for j, (index, opts) in enumerate(runs):
        if failed is not None:
            results.put((index, None, None, None, failed))
            continue
        try:
            summary = run(opts, Log(True), show_summary=False,
                          ready=(lambda: barrier.wait(timeout=600)) if j == 0 else None)
            results.put((index, summary["throughput"], summary["start_time"], summary["end_time"], None))
        except BaseException as err:  # noqa: BLE001 - reported by the parent as one line
            if j == 0:
                barrier.abort()
            failed = (type(err).__name__, str(err))
            results.put((index, None, None, None, failed))


def run_devices(opts: RunOptions, log: Log) -> float:
    """``--device 0,1``: one run per device id, with a contiguous share of the batches, outputs in
    ``{output_dirname}/device{id}/`` with ``device{id}_summary.json`` (ais_bench's layout). The runs go to at most
    one worker process per core (more would only share the cores and multiply the memory), each with its share of
    the cores; the workers start timing together. Prints ais_bench's per-device and summary throughput lines. An
    interrupt reaches every worker once, and each removes its temporaries before the parent exits."""
    from poc.engines.pick import backend_for  # here: an .om run hands off to ais_bench without loading an engine
    opts.validate()
    devices = opts.devices
    spec = input_spec(backend_for(opts.model).load(opts.model, 1), opts.model, opts.batchsize)
    plan = plan_batches(opts, spec, Log(True))
    shares: list[list[str] | None] = [None] * len(devices)
    if plan.files:
        groups = plan.groups
        per = -(-len(groups) // len(devices))
        shares = [[f for g in groups[i * per:(i + 1) * per] for f in g] for i in range(len(devices))]
    dirname = opts.output_dirname or aisbench.default_dirname()
    if opts.output is not None:
        OutputSet({"--output/--output_dirname": os.path.join(opts.output, dirname)},
                  {"--model": opts.model, **{f"--input {p}": p for p in (opts.input or "").split(",") if p.strip()}})
    active = [i for i in range(len(devices)) if not plan.files or shares[i]]  # fewer batches than devices: idle ones
    cores = len(os.sched_getaffinity(0))
    n_workers = min(len(active), cores)
    threads = min(opts.threads, cores) if opts.threads else max(1, cores // n_workers)
    log(f"{len(devices)} devices ({opts.device}) on {n_workers} worker processes"
        + (f" (at most one per core: {cores})" if n_workers < len(active) else "") + f", {threads} threads each"
        + (f", {', '.join(str(len(s)) for s in shares)} files" if plan.files else ""))
    runs: list[list[tuple[int, RunOptions]]] = [[] for _ in range(n_workers)]
    for k, i in enumerate(active):
        runs[k % n_workers].append((i, RunOptions(**{
            **vars(opts), "device": str(devices[i]), "threads": threads, "quiet": True, "files": shares[i],
            "output_dirname": aisbench.device_dirname(devices[i]),
            "output": os.path.join(opts.output, dirname) if opts.output is not None else None})))
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(n_workers), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(r, barrier, results), daemon=True) for r in runs]
    sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the workers start with it ignored until their handler
    try:
        for p in workers:
            p.start()
    finally:
        signal.signal(signal.SIGINT, sigint)
    try:
        got = _collect(results, len(active), workers, runs)
    except BaseException:
        with signals_deferred():  # every worker removes its temporaries before this process exits
            for p in workers:
                if p.is_alive():
                    p.terminate()
            for p in workers:
                p.join()
        raise
    finally:
        results.close()
    for p in workers:
        p.join()
    failed = [g for g in got if g[4] is not None]
    if failed:
        name, message = failed[0][4]
        if name == "InputError":
            raise InputError(message.split(": ", 1)[0], message.split(": ", 1)[-1])
        if name == "KeyboardInterrupt":
            raise KeyboardInterrupt
        raise ToolError(f"worker {failed[0][0]} (device {devices[failed[0][0]]}) failed: {name}: {message}")
    total = 0.0
    for index, throughput, start, end, _ in sorted(got):
        print(aisbench.device_line(index, devices[index], throughput, start, end))
        total += throughput
    print(aisbench.devices_total_line(total), flush=True)
    wall = max(g[3] for g in got) - min(g[2] for g in got)  # the workers started together (a barrier)
    images = len(plan.files) * opts.loop if plan.files else len(active) * opts.loop * spec.shape[0]
    where = os.path.join(opts.output, dirname, "device{" + ",".join(str(devices[i]) for i in active) + "}")
    log(f"end to end: {images / wall if wall > 0 else 0.0:.1f} images/s over {wall:.1f} s "
        + (f"({len(plan.files)} files read" if plan.files else "(pure inference")
        + (f", outputs in {where}/, summaries beside them)" if opts.output is not None else ")"))
    return total


def _collect(results, count: int, workers: list, runs: list) -> list:
    """``count`` results from the workers; a worker that dies without reporting (killed) is one line, not a hang."""
    got = []
    while len(got) < count:
        try:
            got.append(results.get(timeout=0.5))
        except queue.Empty:
            dead = [k for k, p in enumerate(workers) if p.exitcode not in (None, 0)]
            if dead and results.empty():
                ids = ", ".join(str(o.device) for _, o in runs[dead[0]])
                raise ToolError(f"the worker for device(s) {ids} ended with exit code {workers[dead[0]].exitcode} "
                                "without a result") from None
    return got


# --- command line ----------------------------------------------------------------------------------------

def str2bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "y", "t"):
        return True
    if value in ("false", "0", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"'{text}' is not true or false")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="infer.sh", description="Stage 6: batch inference with ais_bench's arguments. An .om model runs "
        "python3 -m ais_bench with the arguments as given; an .onnx model runs on ONNX Runtime on the CPU with the "
        "same file layout.")
    p.add_argument("--model", "-m", required=True, help=".om (ais_bench), .onnx (ONNX Runtime) or .xml (OpenVINO)")
    p.add_argument("--input", "-i", default=None, help="folders or comma-separated .bin/.npy files; "
                                                       "none: pure inference")
    p.add_argument("--output", "-o", default=None, help="output root; none: outputs are not written")
    p.add_argument("--output_dirname", default=None, help="sub-folder of --output (default: a timestamp)")
    p.add_argument("--outfmt", default="BIN", type=str.upper, choices=OUTFMTS, help="(default: BIN)")
    p.add_argument("--loop", "-l", type=int, default=1, help="runs of every batch, or pure-inference loops (default: 1)")
    p.add_argument("--warmup_count", type=int, default=1, help="warm-up runs, not counted (default: 1)")
    p.add_argument("--batchsize", type=int, default=None,
                   help="the batch in the throughput line (as ais_bench); also fixes a dynamic-batch .onnx's batch")
    p.add_argument("--device", "-d", default="0",
                   help="NPU id, or ids such as 0,1: one process per device, as ais_bench (CPU: one worker per id, "
                        "each with its share of the cores and of the batches) (default: 0)")
    p.add_argument("--pure_data_type", choices=("zero", "random"), default="zero",
                   help="pure-inference input (default: zero)")
    p.add_argument("--display_all_summary", type=str2bool, default=False,
                   help="also print the H2D and D2H latency lines (default: false)")
    p.add_argument("--output_batchsize_axis", type=int, default=0,
                   help="the outputs' batch axis, for splitting them per input file (default: 0)")
    for flag in aisbench.NPU_ONLY_FLAGS:
        p.add_argument(flag, default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=0, help="CPU only: ONNX Runtime intra-op threads (0: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines (the summary still prints)")
    return p


def options(argv: list[str]) -> RunOptions:
    args = parser().parse_args(argv)
    given = [flag for flag in aisbench.NPU_ONLY_FLAGS if getattr(args, flag[2:]) is not None]
    kept = {k: v for k, v in vars(args).items() if f"--{k}" not in aisbench.NPU_ONLY_FLAGS}
    return RunOptions(**kept, argv=[sys.argv[0], *argv], npu_only=given)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = options(argv)
    log = Log(opts.quiet, "infer")
    model = Path(opts.model)
    if not model.is_file():
        raise InputError(model, "no such model file")
    if model.suffix == ".om":
        return ascend.run_ais_bench(model, aisbench.ais_bench_args(argv), log)
    if model.suffix not in (".onnx", ".xml"):
        raise InputError(model, "expected an .om (ais_bench), .onnx (ONNX Runtime) or .xml (OpenVINO) model")
    log(f"backend: cpu ({'OpenVINO' if model.suffix == '.xml' else 'ONNX Runtime'} runner; the model is "
        f"{model.suffix})")
    cores = len(os.sched_getaffinity(0))
    if opts.threads > cores:  # more threads than cores only wait on each other (and 100,000 of them exhaust memory)
        log(f"--threads {opts.threads}: capped at the {cores} cores this process may use")
        opts.threads = cores
    if len(opts.devices) > 1:
        run_devices(opts, log)
    else:
        run(opts, log)
    return 0


if __name__ == "__main__":
    run_main(main)
