"""Where a compiled model's time goes, layer by layer, on either CPU engine: every layer's share of a batch and,
for convolutions, its multiply-add rate (GMAC/s), grouped by kernel size and output map size, so what keeps an
engine from the CPU's rate shows (small maps, memory-bound 1x1 layers, the first convolution behind AIPP).

    python3 -m poc.layer_profile --model models/resnet50_quant_bs24.onnx   # ONNX Runtime
    python3 -m poc.layer_profile --model models/resnet50_quant_bs24.xml    # OpenVINO (benchmark.sh --layers: both)

Times are per batch and wall-clock: ONNX Runtime's node times, and OpenVINO's layer times summed over its streams
and divided by their number (the streams run side by side, one core each). Profiling adds a little to each layer.
"""
from __future__ import annotations

import json
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poc.config import IMAGE_CHANNELS, INPUT_NAME
from poc.engines.base import input_spec
from poc.engines.pick import backend_for
from poc.perf.cpu_rates import layer_macs

# what each engine appends to the source model's node name
_SUFFIXES = re.compile(r"(/WithoutBiases|_token_\d+|_quant|_kernel_time)+$")


@dataclass
class Conv:
    """A convolution of the float source model: multiply-adds per image, kernel and output map size."""

    macs: int
    kernel: str
    out_hw: str


def source_convs(source, hw: int) -> dict[str, Conv]:
    """Every Conv of the float model ``source`` at ``hw`` x ``hw`` input, by node name."""
    return {name: Conv(layer.macs, f"{layer.weight[2]}x{layer.weight[3]}", f"{layer.output[2]}x{layer.output[3]}")
            for name, layer in layer_macs(source, INPUT_NAME, (IMAGE_CHANNELS, hw, hw)).items() if layer.op == "Conv"}


def layer_times(model, runs: int, warmup: int) -> tuple[dict[str, tuple[str, float]], int, str]:
    """({layer: (kind, seconds per batch)}, batch, engine) over ``runs`` timed runs of a compiled model."""
    backend = backend_for(model)
    if backend.name() == "openvino":
        backend.load(model, profiling=True)
        spec = input_spec(backend, model, None)
        feed = {spec.name: np.zeros(spec.shape, spec.dtype)}
        for _ in range(warmup):
            backend.predict(feed)
        times: dict[str, list] = defaultdict(lambda: ["", 0.0])
        for _ in range(runs):
            backend.predict(feed)
            for request in backend.requests:
                for p in request.get_profiling_info():
                    entry = times[p.node_name]
                    entry[0] = f"{p.node_type} {p.exec_type}"
                    entry[1] += p.real_time.total_seconds() / runs / backend.streams
        return {k: (v[0], v[1]) for k, v in times.items()}, spec.shape[0], "openvino"
    with tempfile.TemporaryDirectory(prefix="poc-profile-") as tmp:
        backend.load(model, profile_prefix=Path(tmp) / "ort")
        spec = input_spec(backend, model, None)
        feed = {spec.name: np.zeros(spec.shape, spec.dtype)}
        for _ in range(warmup + runs):
            backend.predict(feed)
        events = json.loads(Path(backend.session.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    first = starts[warmup] if len(starts) > warmup else 0  # the warm-up runs are not counted
    times = defaultdict(lambda: ["", 0.0])
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first:
            entry = times[e["name"][:-len("_kernel_time")]]
            entry[0] = e.get("args", {}).get("op_name", "?")
            entry[1] += e["dur"] / 1e6 / runs
    return {k: (v[0], v[1]) for k, v in times.items()}, spec.shape[0], "onnxruntime"


def profile(model, source, hw: int, runs: int = 20, warmup: int = 3) -> dict:
    """The layer table of a compiled model: rows grouped by what they are, and the layers themselves."""
    convs = source_convs(source, hw)
    times, batch, engine = layer_times(model, runs, warmup)
    groups: dict[str, list] = defaultdict(lambda: [0.0, 0, 0])
    layers = []
    for name, (kind, seconds) in times.items():
        conv = convs.get(_SUFFIXES.sub("", name))
        key = f"conv {conv.kernel} -> {conv.out_hw} maps" if conv else kind.split()[0]
        groups[key][0] += seconds
        groups[key][1] += conv.macs * batch if conv else 0
        groups[key][2] += 1
        layers.append({"layer": name, "kind": kind, "ms": seconds * 1e3,
                       "gmac_per_s": conv.macs * batch / seconds / 1e9 if conv and seconds else None})
    total = sum(t for t, _, _ in groups.values())
    rows = [{"what": k, "layers": n, "ms": t * 1e3, "share": t / total if total else 0.0,
             "gmac_per_s": m / t / 1e9 if m and t else None}
            for k, (t, m, n) in sorted(groups.items(), key=lambda kv: -kv[1][0])]
    return {"model": str(model), "engine": engine, "batch": batch, "ms_per_batch": total * 1e3,
            "groups": rows, "layers": sorted(layers, key=lambda r: -r["ms"])}


def print_profile(p: dict, top: int = 10) -> None:
    print(f"\n{p['engine']} {p['model']}: {p['ms_per_batch']:.2f} ms per batch of {p['batch']} in its layers "
          f"({p['batch'] / p['ms_per_batch'] * 1e3:.0f} img/s)")
    print(f"  {'what':<34} {'layers':>6} {'ms':>8} {'share':>6} {'GMAC/s':>7}")
    for r in p["groups"]:
        rate = f"{r['gmac_per_s']:>7.0f}" if r["gmac_per_s"] else f"{'-':>7}"
        print(f"  {r['what'][:34]:<34} {r['layers']:>6} {r['ms']:>8.3f} {r['share'] * 100:>5.1f}% {rate}")
    print(f"  the {top} slowest layers:")
    for r in p["layers"][:top]:
        rate = f"{r['gmac_per_s']:>7.0f}" if r["gmac_per_s"] else f"{'-':>7}"
        print(f"    {r['ms']:>7.3f} ms {rate} GMAC/s  {r['layer']}  ({r['kind']})")
