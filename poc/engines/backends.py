"""CPU inference backends, each a small object as in the MLPerf inference reference (name, version, load,
predict): ONNX Runtime (the reference) and OpenVINO (the second engine, for ``.xml`` IR models); and the one place
an ONNX file is parsed. ``backend_for(model)`` picks the engine from the model file, as the runner does."""
from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from poc.config import SOURCE_KEY
from poc.shared.errors import InputError, regular_file


def load_onnx(path, load_external_data: bool = True) -> onnx.ModelProto:
    """Parse an ONNX file; anything unreadable is one line about the file."""
    path = regular_file(path, "model file")
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except Exception as err:  # noqa: BLE001 - any parse failure is one line about this file
        raise InputError(path, f"not an ONNX model ({type(err).__name__})") from None


def model_source(path) -> str | None:
    """The sha256 of the weights ``path`` was made from (SOURCE_KEY, written by the export and carried on by the
    quantize and compile stages), or None for a model made elsewhere (AMCT, ATC, a model of the user's)."""
    path = Path(path)
    if path.suffix.lower() == ".xml":  # an OpenVINO IR keeps it in its rt_info, at the end of the XML
        import xml.etree.ElementTree as ElementTree
        try:
            node = ElementTree.parse(regular_file(path, "model file")).getroot().find(f"rt_info/{SOURCE_KEY}")
        except ElementTree.ParseError:
            raise InputError(path, "not an OpenVINO IR (the XML does not parse)") from None
        return None if node is None else node.get("value")
    if path.suffix.lower() != ".onnx":
        return None
    meta = {p.key: p.value for p in load_onnx(path, load_external_data=False).metadata_props}
    return meta.get(SOURCE_KEY)


def same_source(models: dict[str, object]) -> None:
    """Refuse, in one line, models that were made from different weights ({what: path}): the figures of one network
    beside another's compare nothing. Models whose source is not recorded are let through."""
    known = [(what, path, model_source(path)) for what, path in models.items() if path and Path(path).is_file()]
    known = [k for k in known if k[2]]
    for what, path, source in known[1:]:
        if source != known[0][2]:
            raise InputError(path, f"{what} was made from other weights (sha256 {source[:12]}...) than "
                                   f"{known[0][0]} {known[0][1]} ({known[0][2][:12]}...): two networks' figures do "
                                   "not compare; use models of one profile's run")


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU."""

    def name(self) -> str:
        return "onnxruntime"

    def version(self) -> str:
        return ort.__version__

    def load(self, model, threads: int = 0, spin: bool = True, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
             optimized_path=None, profile_prefix=None) -> OnnxRuntimeBackend:
        """``model``: a path or serialized bytes. ``spin=False``: idle pool threads sleep instead of spinning
        (needed when two sessions take turns on the same cores). ``optimized_path``: also save the graph as
        optimised at ``level``. ``profile_prefix``: time every node (``session.end_profiling()`` writes the JSON)."""
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.intra_op_num_threads = threads
        if optimized_path is not None:
            opts.optimized_model_filepath = str(optimized_path)
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if profile_prefix is not None:
            opts.enable_profiling, opts.profile_file_prefix = True, str(profile_prefix)
        source = model if isinstance(model, bytes) else str(regular_file(model, "model file"))
        try:
            self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - any load failure is one line about this file
            where = "the model" if isinstance(model, bytes) else model
            raise InputError(where, f"ONNX Runtime cannot load it ({str(err).splitlines()[0][:160]})") from None
        self.inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]
        return self

    def input_info(self) -> list[tuple[str, np.dtype | None, list]]:
        """(name, element type, shape with None for a dynamic dimension) of every input."""
        return [(i.name, np.dtype(_ORT_TYPES[i.type]) if i.type in _ORT_TYPES else None,
                 [d if isinstance(d, int) else None for d in i.shape]) for i in self.inputs]

    def predict(self, feed: dict) -> list[np.ndarray]:
        return self.session.run(self.outputs, feed)

    # One batch at a time: submit() runs it and collect() hands its outputs back (the runner's loop is the same for
    # both engines).
    in_flight = 1

    def submit(self, feed: dict):
        return self.predict(feed)

    def collect(self, ticket) -> list[np.ndarray]:
        return ticket

    def finished_at(self, ticket) -> float | None:
        """When a collected batch finished (``time.perf_counter``); None: when ``collect`` returned (submit ran it)."""
        return None


# Inference precisions of the OpenVINO engine, as an IR's rt_info names them (written by the compile stage).
PRECISION_KEY = "poc_inference_precision"


@functools.cache
def openvino_core():
    """The process's one OpenVINO Core. One, not one per model: each Core's CPU plugin installs an alternate signal
    stack on the thread that compiles, and a Core destroyed out of creation order puts back one that is already
    freed, so that the next signal (Ctrl-C) crashes the process (OpenVINO 2026.4, seen with two models)."""
    import openvino as ov
    return ov.Core()


def cpuinfo(field: str) -> str:
    """The first ``field`` line of /proc/cpuinfo (``model name``, ``flags``), '' where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == field:
                return value.strip()
    except OSError:
        pass
    return ""


def amx_int8() -> bool:
    """The CPU has AMX-INT8 matrix units (the ``amx_int8`` flag of /proc/cpuinfo; False where there is none)."""
    return "amx_int8" in cpuinfo("flags").split()


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
        import openvino as ov
        return ov.__version__.split("-")[0]

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


MAX_INPUT_BYTES = 1 << 30  # one batch of the model's input: 24 x 3 x 1024 x 1024 float32 is 288 MiB


def backend_for(model_path):
    """The engine that runs a compiled model file: ``.xml`` -> OpenVINO, ``.onnx`` -> ONNX Runtime."""
    return OpenVinoBackend() if str(model_path).lower().endswith(".xml") else OnnxRuntimeBackend()


@dataclass
class InputSpec:
    """The one input a compiled model takes: its name, element type and (batch-fixed) shape."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # a Python int: no overflow for absurd shapes


_ORT_TYPES = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float)": np.float32,
              "tensor(float16)": np.float16, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


def input_spec(backend, model_path, batchsize: int | None) -> InputSpec:
    """The model's single input; a dynamic batch is fixed to ``batchsize`` (1 when not given)."""
    info = backend.input_info()
    if len(info) != 1:
        raise InputError(model_path, f"has {len(info)} inputs; the runner feeds single-input models")
    name, dtype, shape = info[0]
    if dtype is None:
        raise InputError(model_path, f"the type of input {name} is not supported")
    shape = list(shape)
    if shape and shape[0] is None:
        shape[0] = batchsize or 1
    if not all(isinstance(d, int) and d > 0 for d in shape):
        raise InputError(model_path, f"input shape {info[0][2]} is dynamic beyond the batch; compile it with "
                                     "atc_convert.sh first")
    spec = InputSpec(name, dtype, tuple(shape))
    if spec.nbytes > MAX_INPUT_BYTES:  # checked before a batch of it is allocated
        raise InputError(model_path, f"input {name} {list(shape)} is {spec.nbytes} bytes a batch, more than the "
                                     f"{MAX_INPUT_BYTES >> 20} MiB the runner allows")
    return spec
