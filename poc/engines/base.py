"""What every CPU engine is, as in the MLPerf inference reference: a small object with ``name()``, ``version()``,
``load(model, threads, spin)`` and ``predict(feed)``, plus ``input_info()`` and, for the runner's loop, ``submit(feed)``
-> ticket, ``collect(ticket)``, ``finished_at(ticket)`` and ``in_flight`` (how many batches it runs side by side).
Here: the model's input as an engine reports it, and the queue of batches in flight, timed as the NPU times them."""
from __future__ import annotations

import collections
import contextlib
import math
import time
from dataclasses import dataclass

import numpy as np

from poc.shared.errors import InputError

MAX_INPUT_BYTES = 1 << 30  # one batch of the model's input: 24 x 3 x 1024 x 1024 float32 is 288 MiB


@dataclass
class InputSpec:
    """The one input a compiled model takes: its name, element type and (batch-fixed) shape."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize  # a Python int: no overflow for absurd shapes


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


class InFlight:
    """The batches queued on an engine, oldest first (at most ``backend.in_flight``), and each one's compute time.

    A batch's compute time runs from when the engine could start it (submitted, or the batch ahead of it done) to
    its end: with batches queued back to back that is the time between completions, and the times add up to the
    time the engine was busy, as the NPU's do. The runner and the benchmark's table both time batches this way."""

    def __init__(self, backend):
        self.backend, self.queue, self.times, self.last_done = backend, collections.deque(), [], 0.0

    def submit(self, feed: dict, tag=None) -> list:
        """Queue a batch behind the ones ahead; returns the (tag, outputs) of those collected to make room for the
        next, oldest first (the engine has this one to run meanwhile)."""
        submitted = time.perf_counter()  # before: ONNX Runtime's submit runs the batch
        self.queue.append((self.backend.submit(feed), submitted, tag))
        return [self._collect_oldest() for _ in range(len(self.queue) - self.backend.in_flight + 1)]

    def collect_all(self) -> list:
        """The (tag, outputs) of every queued batch, oldest first."""
        return [self._collect_oldest() for _ in range(len(self.queue))]

    def _collect_oldest(self):
        ticket, submitted, tag = self.queue.popleft()
        result = self.backend.collect(ticket)
        collected = time.perf_counter()
        done = min(self.backend.finished_at(ticket) or collected, collected)
        # an engine with several streams may finish a batch before the one ahead of it: that one then took no time
        self.times.append(max(0.0, done - max(submitted, self.last_done)) * 1000)
        self.last_done = max(self.last_done, done)
        return tag, result

    def drain(self) -> None:
        """An interrupted run: let the engine finish what it started, untimed."""
        while self.queue:
            with contextlib.suppress(Exception):
                self.backend.collect(self.queue.popleft()[0])
