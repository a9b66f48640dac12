"""Stage 4, part 1: activation ranges for INT8, calibrated like AMCT's IFMR.

The calibration batches are streamed through the float model twice (per-tensor min/max, then a histogram on
that range); IFMR then starts from the percentile clip points and searches the clip factor over
[search_range_start, search_range_end] by search_step, keeping per tensor the one with the least quantization
error.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

from poc.config import INPUT_NAME
from poc.engines.onnxruntime import with_outputs
from poc.formats.quant_cfg import QuantConfig
from poc.shared.errors import InputError
from poc.shared.progress import Log

HIST_BINS = 2048
HIST_CHUNK = 1 << 20  # values binned at a time: the float32 and index buffers stay in the core's cache
Ranges = dict[str, tuple[float, float]]  # tensor name -> (lo, hi)


def read_calibration_bins(data_dir, shape: list[int], data_type: str, batch_num: int) -> list[np.ndarray]:
    """The first ``batch_num`` files of ``data_dir`` in ascending name order, as AMCT reads them."""
    data_dir = Path(data_dir)
    if data_type != "float32":
        raise InputError("--data_types", f"'{data_type}': the calibration bins are float32")
    if not data_dir.is_dir():
        raise InputError(data_dir, "no such calibration data folder")
    files = sorted(p for p in data_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if len(files) < batch_num:
        raise InputError(data_dir, f"{len(files)} calibration files, but batch_num is {batch_num}")
    want = int(np.prod(shape)) * 4
    batches = []
    for path in files[:batch_num]:
        size = path.stat().st_size
        if size != want:
            raise InputError(path, f"{size} bytes, expected {want} (float32 {shape})")
        batch = np.fromfile(path, dtype="<f4").reshape(shape)
        if not np.isfinite(batch).all():
            raise InputError(path, "holds NaN or infinite values")
        batches.append(batch)
    return batches


class BatchReader(CalibrationDataReader):
    """Feeds the calibration batches to ONNX Runtime's calibrators (the onnxruntime examples' pattern)."""

    def __init__(self, batches, input_name: str = INPUT_NAME):
        self.batches, self.input_name, self.pos = batches, input_name, 0

    def get_next(self):
        if self.pos >= len(self.batches):
            return None
        self.pos += 1
        return {self.input_name: self.batches[self.pos - 1]}

    def rewind(self):
        self.pos = 0


def calibration_tensors(model: onnx.ModelProto, op_types) -> list[str]:
    """Float activations entering or leaving the ops to quantize (what ONNX Runtime asks ranges for)."""
    floats = {vi.name for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
              if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    inits = {i.name for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type in op_types:
            for t in list(node.input) + list(node.output):
                if t in floats and t not in inits and t not in names:
                    names.append(t)
    return names


def collect_histograms(model: onnx.ModelProto, batches, op_types, log: Log):
    """Per tensor: (min, max, counts[HIST_BINS]) over all calibration batches, in two streaming passes."""
    names = calibration_tensors(model, op_types)
    backend = with_outputs(model, names)
    input_name = backend.inputs[0].name
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for batch in log.bar(batches, desc="calibration pass 1/2 (ranges)", unit="batch"):
        for n, v in zip(names, backend.predict({input_name: batch}), strict=False):
            lo[n], hi[n] = min(lo[n], float(v.min())), max(hi[n], float(v.max()))
    hists = {n: np.zeros(HIST_BINS, np.int64) for n in names}

    def add_histogram(name: str, values: np.ndarray) -> None:
        if hi[name] > lo[name]:
            hists[name] += histogram(values, lo[name], hi[name])

    # the histograms of a 224x224 network's activations take longer than its inference: one tensor per core
    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        for batch in log.bar(batches, desc="calibration pass 2/2 (histograms)", unit="batch"):
            list(pool.map(add_histogram, names, backend.predict({input_name: batch})))
    return {n: (lo[n], hi[n], hists[n]) for n in names}


def histogram(values: np.ndarray, lo: float, hi: float, bins: int = HIST_BINS) -> np.ndarray:
    """Counts of ``values`` (all within [lo, hi], hi > lo) in ``bins`` equal bins, the top edge in the last one.

    np.histogram's binning in float32 arithmetic, chunk by chunk (half its time; a value within float32 rounding
    of a bin edge may land in the neighbouring bin)."""
    flat = values.reshape(-1)
    counts = np.zeros(bins, np.int64)
    lo32, per_unit = np.float32(lo), np.float32(bins / (hi - lo))
    scaled = np.empty(min(HIST_CHUNK, flat.size), np.float32)
    index = np.empty(scaled.size, np.int32)
    for start in range(0, flat.size, HIST_CHUNK):
        part = flat[start:start + HIST_CHUNK]
        s, i = scaled[:part.size], index[:part.size]
        np.subtract(part, lo32, out=s, casting="unsafe")
        s *= per_unit
        i[:] = s  # truncation: floor, as every value is >= lo
        np.clip(i, 0, bins - 1, out=i)
        counts += np.bincount(i, minlength=bins)
    return counts


def ifmr_range(lo: float, hi: float, counts: np.ndarray, cfg: QuantConfig) -> tuple[float, float]:
    """AMCT-style IFMR on a histogram: percentile clip points, then the clip factor with the least error."""
    if hi <= lo or counts.sum() == 0:
        return min(lo, 0.0), max(hi, 0.0)
    edges = np.linspace(lo, hi, len(counts) + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    cdf = np.cumsum(counts) / counts.sum()
    clip_hi = edges[1:][np.searchsorted(cdf, cfg.max_percentile, side="left").clip(0, len(counts) - 1)]
    clip_lo = edges[:-1][np.searchsorted(cdf, 1.0 - cfg.min_percentile, side="right").clip(0, len(counts) - 1)]
    clip_lo, clip_hi = min(float(clip_lo), 0.0), max(float(clip_hi), 0.0)
    factors = np.arange(cfg.search_range_start, cfg.search_range_end + cfg.search_step / 2, cfg.search_step)
    if cfg.activation_offset:  # asymmetric uint8: [lo, hi] -> 0..255 with a zero point
        rlo, rhi = clip_lo * factors, clip_hi * factors
        scale = np.maximum(rhi - rlo, 1e-12) / 255.0
        zero = np.round(-rlo / scale)
        q = np.clip(np.round(centres[None] / scale[:, None]) + zero[:, None], 0, 255)
        deq = (q - zero[:, None]) * scale[:, None]
    else:  # symmetric: [-m, m]
        m = max(-clip_lo, clip_hi) * factors
        rlo, rhi = -m, m
        scale = np.maximum(m, 1e-12) / 127.0
        deq = np.clip(np.round(centres[None] / scale[:, None]), -127, 127) * scale[:, None]
    err = ((deq - centres[None]) ** 2 * counts[None]).sum(1)
    best = int(np.argmin(err))
    return float(rlo[best]), float(rhi[best])


def ifmr_ranges(model: onnx.ModelProto, batches, op_types, cfg: QuantConfig, log: Log) -> Ranges:
    """IFMR ranges for every activation the quantizer will ask for."""
    hists = collect_histograms(model, batches, op_types, log)
    return {n: ifmr_range(lo, hi, c, cfg) for n, (lo, hi, c) in hists.items()}
