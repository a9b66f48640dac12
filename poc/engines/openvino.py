"""The second CPU engine: OpenVINO. Its backend (an IR's own inference precision, one stream per core on slices
of the batch, two batches in flight), and its compile: an IR with the batch fixed and the AIPP stage as OpenVINO's
pre-processing, the precision ATC's --precision_mode asks for, and float convolutions on small maps rewritten to
lay the batch along the width. ``openvino`` itself is imported where it is used: the ONNX Runtime paths and the
runner's ``.om`` hand-off import this module's names without loading it."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from poc.config import SOURCE_KEY
from poc.engines.batch_along_width import lay_batch_along_width
from poc.formats.aipp import Aipp, fold_into_model
from poc.formats.model_file import has_qdq
from poc.shared.errors import InputError, OutputSet, StageError, first_line, regular_file
from poc.shared.progress import Log

SUFFIX = ".xml"

# Inference precisions of the OpenVINO engine, as an IR's rt_info names them (written by the compile stage).
PRECISION_KEY = "poc_inference_precision"


@functools.cache
def openvino():
    """The ``openvino`` package, imported with its usage telemetry declined. ``import openvino`` imports its model
    converter, which (unless declined; no consent file means yes) sends usage data from a process it forks: this
    toolkit works offline, and a fork while the engines' threads hold their locks can hang the child (seen: the
    benchmark waiting on one for minutes). The package's own opt-out for automated runs is the CI variable, read
    once, at that import: it is set for the import only, and put back."""
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        import openvino as ov
    finally:
        if saved is None:
            del os.environ["CI"]
        else:
            os.environ["CI"] = saved
    return ov


@functools.cache
def openvino_core():
    """The process's one OpenVINO Core. One, not one per model: each Core's CPU plugin installs an alternate signal
    stack on the thread that compiles, and a Core destroyed out of creation order puts back one that is already
    freed, so that the next signal (Ctrl-C) crashes the process (OpenVINO 2026.4, seen with two models)."""
    return openvino().Core()


def native_bf16() -> bool:
    """The CPU computes bfloat16 natively (AVX512-BF16 or AMX), which OpenVINO reports as a BF16 capability."""
    return "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@contextlib.contextmanager
def _native_stderr_dropped():
    """Send what native code writes to file descriptor 2 to /dev/null for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class OpenVinoBackend:
    """OpenVINO on the CPU, for an IR (``.xml`` + ``.bin``) written by the compile stage. The inference precision
    is the one the IR asks for (rt_info ``poc_inference_precision``: f32 or bf16), FP32 when it asks nothing."""

    def name(self) -> str:
        return "openvino"

    def version(self) -> str:
        return openvino().__version__.split("-")[0]

    def load(self, model_path, threads: int = 0, spin: bool = True, precision: str | None = None,
             profiling: bool = False) -> OpenVinoBackend:
        """``model_path``: an IR (or an ONNX file, which OpenVINO reads too); ``precision`` overrides the IR's.
        ``threads``: a share of the cores (one of several worker processes), one stream; else all of them.
        ``profiling``: time every layer (each request's ``get_profiling_info()`` after a run)."""
        core = openvino_core()
        regular_file(model_path, "model file")
        if str(model_path).lower().endswith(".xml") and Path(model_path).with_suffix(".bin").exists():
            regular_file(Path(model_path).with_suffix(".bin"), "IR weights file")  # a FIFO would block the reader
        try:
            with _native_stderr_dropped():  # the XML parser's C++ logging would print half a page
                model = core.read_model(str(model_path))
        except Exception:  # noqa: BLE001 - any load failure is one line about this file
            raise InputError(model_path, "OpenVINO cannot read it (not an OpenVINO IR)") from None
        self.precision = precision or (model.get_rt_info([PRECISION_KEY]).astype(str)
                                       if model.has_rt_info([PRECISION_KEY]) else "f32")
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERF_COUNT": profiling}
        self.streams = 1 if threads else batch_streams(model, len(os.sched_getaffinity(0)))
        if self.streams > 1:
            # one stream per core, each on its own slice of the batch: a core that runs a whole layer alone does
            # not wait for the other at every layer's end (the gain per precision: docs/PERFORMANCE.md)
            batch = model.inputs[0].get_shape()[0]
            try:
                model.reshape({model.inputs[0].get_any_name(): [batch // self.streams, *model.inputs[0].get_shape()[1:]]})
                config.update(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=self.streams)
            except Exception:  # noqa: BLE001 - a graph with its batch written into it: the whole batch, one stream
                model, self.streams = core.read_model(str(model_path)), 1
        if self.streams == 1:
            config["PERFORMANCE_HINT"] = "LATENCY"
        if threads:
            # OpenVINO would pin every worker process's threads to the same first cores; let the OS spread them
            config.update(INFERENCE_NUM_THREADS=threads, ENABLE_CPU_PINNING=False)
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as err:  # noqa: BLE001
            lines = [ln for ln in str(err).splitlines() if ln.strip() and not ln.startswith("Exception from")]
            raise InputError(model_path, f"OpenVINO cannot compile it ({(lines or ['?'])[-1][:160]})") from None
        # a request per stream for each batch in flight; submit() takes the sets in turn
        self.request_sets = [[self.compiled.create_infer_request() for _ in range(self.streams)]
                             for _ in range(self.in_flight)]
        self.requests, self._next_set = self.request_sets[0], 0
        # each request notes when it finished, from OpenVINO's thread: the collecting thread may wake late (another
        # thread holds the interpreter, or the OS ran something else), and a batch's time must not be when it was
        # collected (two batches collected together would read as one long and one of a few microseconds)
        self._finished: dict[int, float] = {}
        for request_set in self.request_sets:
            for request in request_set:
                request.set_callback(self._note_finished, id(request))
        self.outputs = [o.get_any_name() for o in self.compiled.outputs]
        return self

    def input_info(self) -> list[tuple[str, np.dtype | None, list]]:
        info = []
        for port in self.compiled.inputs:
            shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            if shape and shape[0] is not None:
                shape[0] *= self.streams  # the whole batch, as the model file has it
            try:
                dtype = np.dtype(port.get_element_type().to_dtype())
            except Exception:  # noqa: BLE001 - a type numpy has no name for
                dtype = None
            info.append((port.get_any_name(), dtype, shape))
        return info

    def predict(self, feed: dict) -> list[np.ndarray]:
        if self.streams == 1:
            result = self.requests[0].infer(feed)
            return [result[port] for port in self.compiled.outputs]
        return self.collect(self.submit(feed, self.requests))

    # Two batches in flight: while the runner's thread collects one batch's outputs (and waits for the interpreter
    # lock its reader and writer threads hold), the next batch already runs, so the cores do not idle between
    # batches (docs/PERFORMANCE.md, "Two batches in flight").
    in_flight = 2

    def submit(self, feed: dict, requests=None) -> list:
        """Start a batch (each stream on its slice) and return its ticket for ``collect``. The caller has at most
        ``in_flight`` batches submitted and not collected (each set of requests is reused ``in_flight`` batches on)."""
        if requests is None:
            requests = self.request_sets[self._next_set]
            self._next_set = (self._next_set + 1) % len(self.request_sets)
        for request in requests:
            self._finished.pop(id(request), None)
        if len(requests) == 1:
            requests[0].start_async(feed)  # copies the inputs into the request's
            return requests
        (name, data), = feed.items()
        for request, part in zip(requests, np.split(data, len(requests)), strict=True):
            request.start_async({name: part})
        return requests

    def collect(self, requests: list) -> list[np.ndarray]:
        """Wait for a submitted batch; its outputs, copied out of the requests (which the next batches reuse)."""
        for request in requests:
            request.wait()
        return [np.concatenate([r.get_output_tensor(i).data for r in requests])
                for i in range(len(self.compiled.outputs))]

    def _note_finished(self, request_id: int) -> None:
        self._finished[request_id] = time.perf_counter()

    def finished_at(self, requests: list) -> float | None:
        """When a collected batch's last slice finished (``time.perf_counter``), as its requests noted it."""
        times = [self._finished.get(id(r)) for r in requests]
        return None if None in times else max(times)


# The smallest slice of the batch a stream takes (measured: slices of 12 on 2 cores; smaller ones are untried, and a
# slice of a few images leaves a core's matrix units short of rows in the late layers).
MIN_STREAM_BATCH = 8


def batch_streams(model, cores: int) -> int:
    """How many streams a model's batch is split over on ``cores`` cores: the most that divide the batch into slices
    of ``MIN_STREAM_BATCH`` or more, one core each at least; 1 for a model that is not one input with a fixed batch
    that every output carries."""
    if len(model.inputs) != 1 or not model.inputs[0].get_partial_shape().is_static:
        return 1
    batch = model.inputs[0].get_shape()[0]
    if any(not o.get_partial_shape().rank.is_static or o.get_partial_shape().rank.get_length() == 0
           or o.get_partial_shape()[0] != batch for o in model.outputs):
        return 1
    return max(s for s in range(1, min(cores, batch) + 1) if batch % s == 0 and (s == 1 or batch // s >= MIN_STREAM_BATCH))


def compile_model(model: onnx.ModelProto, aipp: Aipp | None, shape: list[int], name: str, precision: str, out: Path,
                  outputs: OutputSet, log: Log) -> Path:
    """An OpenVINO IR: the batch fixed and the AIPP stage as OpenVINO's pre-processing, so its input is the OM's."""
    ov = openvino()
    from openvino.preprocess import PrePostProcessor
    outputs.file(out)  # makes the output folder (and checks it can be written) before the scratch folder goes there
    source = {p.key: p.value for p in model.metadata_props}.get(SOURCE_KEY)
    with tempfile.TemporaryDirectory(prefix=".ov.", dir=out.parent) as tmp:
        fixed = Path(tmp) / "fixed.onnx"
        model = fold_into_model(model, None, shape, input_name=name)
        widened = 0
        if precision in ("f32", "bf16") and not has_qdq(model):
            model, widened = lay_batch_along_width(model)
        onnx.save(model, str(fixed))
        try:
            ov_model = ov.convert_model(str(fixed))
        except Exception as err:  # noqa: BLE001 - a conversion failure is one line
            raise StageError(f"OpenVINO cannot convert the model: {first_line(err)}") from None
    if aipp is not None:
        ppp = PrePostProcessor(ov_model)
        port = ppp.input(name)
        port.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")) \
            .set_shape([shape[0], aipp.src_h, aipp.src_w, 3])
        port.model().set_layout(ov.Layout("NCHW"))
        steps = port.preprocess().convert_element_type(ov.Type.f32)
        if aipp.crop:
            h0, w0, h, w = aipp.crop
            steps.crop([0, h0, w0, 0], [shape[0], h0 + h, w0 + w, 3])
        if aipp.swap_rb:
            steps.reverse_channels()
        # AIPP: (x - mean_chn - min_chn) * var_reci_chn; OpenVINO's scale divides, so 1 / var_reci_chn.
        steps.mean([float(m + n) for m, n in zip(aipp.mean, aipp.min, strict=True)])
        steps.scale([float(1.0 / v) for v in aipp.var_reci])
        ov_model = ppp.build()
    ov_model.set_rt_info(precision, [PRECISION_KEY])
    if source:  # which weights it was made from, as the ONNX files say in their metadata
        ov_model.set_rt_info(source, [SOURCE_KEY])
    with outputs, tempfile.TemporaryDirectory(prefix=".ov.", dir=out.parent) as tmp:
        ov.save_model(ov_model, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
        os.replace(Path(tmp) / "model.xml", outputs.file(out))
        os.replace(Path(tmp) / "model.bin", outputs.file(out.with_suffix(".bin")))
    log(f"wrote {out} (+ {out.with_suffix('.bin').name}): OpenVINO IR, input {name} "
        + (f"uint8 NHWC [{shape[0]},{aipp.src_h},{aipp.src_w},3] with AIPP as pre-processing" if aipp
           else f"float32 NCHW {shape}") + f", inference precision {precision.upper()}"
        + (f"; {widened} convolutions on small maps with the batch along the width" if widened else ""))
    return out

