"""Stage 4: INT8 post-training quantization. ``amct_onnx calibration`` when AMCT is installed; otherwise ONNX
Runtime static INT8 in QDQ form, calibrated like AMCT's IFMR and written under AMCT's file names.

CPU recipe: uint8 activations (asymmetric when ``activation_offset: true``) with int8 per-channel weights -
the U8S8 VNNI path, about 3x faster here than int8 activations. Calibration streams the batches through the
float model twice (per-tensor min/max, then a histogram on that range); IFMR then starts from the percentile
clip points and searches the clip factor over [search_range_start, search_range_end] by search_step, keeping
per tensor the one with the least quantization error; those ranges go to ONNX Runtime's quantizer.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data
from onnxruntime.quantization.shape_inference import quant_pre_process

from .calib_data import normalise
from .compile import CPU_QUANTIZER_KEY, parse_input_shape
from .config import (BATCH_SIZE, DEPLOY_SUFFIX, FAKE_QUANT_SUFFIX, IMAGE_BYTES, IMAGE_CHANNELS, IMAGE_HW, INPUT_NAME,
                     REPORT_SUFFIX)
from .errors import InputError, atomic_file, atomic_path
from .naming import natural_key
from .progress import Log
from .quant_cfg import QuantConfig
from .runner import OnnxRuntimeBackend
from .scoring import read_labels

QDQ_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (the axis attribute) needs opset 13
# Ops quantized on the CPU. Softmax stays float: uint8 probabilities would lose everything below 1/255.
QUANT_OP_TYPES = ["Conv", "Gemm", "MatMul", "Add", "Relu", "GlobalAveragePool", "AveragePool", "MaxPool"]
# Layer types AMCT quantizes, and so the only ones skip_layers / skip_layer_types may name.
AMCT_QUANTIZABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul", "AveragePool")
HIST_BINS = 2048
METHODS = ("ifmr", "minmax", "percentile", "entropy")


# --- calibration data -----------------------------------------------------------------------------------

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


# --- model preparation ----------------------------------------------------------------------------------

def prepare_float_model(model_path, work: Path) -> Path:
    """Opset >= 13 (per-channel QDQ) and ONNX Runtime's recommended pre-processing (shape inference)."""
    model_path = Path(model_path)
    try:
        model = onnx.load(str(model_path))
    except Exception as err:  # noqa: BLE001 - any parse failure is one line about this file
        raise InputError(model_path, f"not an ONNX model ({type(err).__name__})") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    upgraded = work / "opset13.onnx"
    onnx.save(model, str(upgraded))
    prepared = work / "prepared.onnx"
    quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=False)
    return prepared


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


def _session_with_outputs(model: onnx.ModelProto, names: list[str]) -> ort.InferenceSession:
    aug = onnx.ModelProto()
    aug.CopyFrom(model)
    have = {o.name for o in aug.graph.output}
    aug.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(aug.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def collect_histograms(model: onnx.ModelProto, batches, op_types, log: Log):
    """Per tensor: (min, max, counts[HIST_BINS]) over all calibration batches, in two streaming passes."""
    names = calibration_tensors(model, op_types)
    session = _session_with_outputs(model, names)
    input_name = session.get_inputs()[0].name
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for batch in log.bar(batches, desc="calibration pass 1/2 (ranges)", unit="batch"):
        for n, v in zip(names, session.run(names, {input_name: batch})):
            lo[n], hi[n] = min(lo[n], float(v.min())), max(hi[n], float(v.max()))
    hists = {n: np.zeros(HIST_BINS, np.int64) for n in names}
    for batch in log.bar(batches, desc="calibration pass 2/2 (histograms)", unit="batch"):
        for n, v in zip(names, session.run(names, {input_name: batch})):
            if hi[n] > lo[n]:
                hists[n] += np.histogram(v, bins=HIST_BINS, range=(lo[n], hi[n]))[0]
    return {n: (lo[n], hi[n], hists[n]) for n in names}


# --- IFMR ------------------------------------------------------------------------------------------------

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


# --- quantization ------------------------------------------------------------------------------------------

def excluded_nodes(model: onnx.ModelProto, cfg: QuantConfig, path, log: Log) -> list[str]:
    """Nodes left in float for skip_layers / skip_layer_types, which (as in AMCT) name quantizable layers."""
    types = {n.name: n.op_type for n in model.graph.node}
    unknown = [s for s in cfg.skip_layers if s not in types]
    if unknown:
        raise InputError(path, f"skip_layers names no node of the model: {', '.join(unknown[:5])}")
    not_quantizable = sorted({f"{s} ({types[s]})" for s in cfg.skip_layers if types[s] not in AMCT_QUANTIZABLE}
                             | {t for t in cfg.skip_layer_types if t not in AMCT_QUANTIZABLE})
    if not_quantizable:
        raise InputError(path, f"skip_layers / skip_layer_types name layers that are not quantized: "
                               f"{', '.join(not_quantizable[:5])} (quantizable: {', '.join(AMCT_QUANTIZABLE)})")
    skip = list(cfg.skip_layers) + [n.name for n in model.graph.node if n.op_type in cfg.skip_layer_types]
    # A Relu right after a skipped node stays float with it: quantizing the Relu would put a Q node on the
    # skipped node's output, and ONNX Runtime would then fuse DQ -> node -> Q into an integer kernel anyway.
    skipped_outputs = {o for n in model.graph.node if n.name in skip for o in n.output}
    skip += [n.name for n in model.graph.node if n.op_type == "Relu" and n.input[0] in skipped_outputs]
    if skip:
        log(f"left in float: {len(skip)} nodes (skip_layers / skip_layer_types)")
    return skip


def quantize_cpu(model_path, save_path, input_shape: str, data_dir, data_type: str, cfg: QuantConfig,
                 cfg_path, work: Path, method: str = "ifmr", log: Log | None = None, nodes_to_quantize=None,
                 write_twin: bool = True, prepared=None, ranges=None) -> dict:
    """Write ``{save_path}_deploy_model.onnx`` (+ the ``_fake_quant_model.onnx`` twin); return the prepared
    float model and the ranges, so that a sensitivity run can reuse them. ``work``: a scratch folder."""
    log = log or Log(stage="quantize")
    start = time.perf_counter()
    name, shape = parse_input_shape(input_shape)
    log(f"calibration config {cfg_path}: batch_num {cfg.batch_num}, activation_offset {cfg.activation_offset}, "
        f"channel_wise {cfg.channel_wise}, IFMR [{cfg.search_range_start}, {cfg.search_range_end}] step "
        f"{cfg.search_step}, percentiles max {cfg.max_percentile} min {cfg.min_percentile}")
    log(f"joint_quant {cfg.joint_quant}, do_fusion {cfg.do_fusion}: accepted; on the CPU ONNX Runtime fuses "
        "Conv+Relu and QDQ pairs itself, and joint quantization has no counterpart")
    # with ranges given (a sensitivity run) there is nothing to calibrate, so nothing to read
    batches = read_calibration_bins(data_dir, shape, data_type, cfg.batch_num) if ranges is None else None
    deploy = Path(f"{save_path}{DEPLOY_SUFFIX}")
    prepared = prepared or prepare_float_model(model_path, work)
    model = onnx.load(str(prepared))
    if model.graph.input[0].name != name:
        raise InputError(model_path, f"has no input '{name}' (input: {model.graph.input[0].name})")
    skip = excluded_nodes(model, cfg, cfg_path, log)
    common = dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                  per_channel=cfg.channel_wise, op_types_to_quantize=QUANT_OP_TYPES, nodes_to_exclude=skip,
                  nodes_to_quantize=nodes_to_quantize,
                  extra_options={"ActivationSymmetric": not cfg.activation_offset, "WeightSymmetric": True})
    with atomic_path(deploy) as tmp:
        if method == "ifmr":
            if ranges is None:
                hists = collect_histograms(model, batches, QUANT_OP_TYPES, log)
                ranges = {n: ifmr_range(lo, hi, c, cfg) for n, (lo, hi, c) in hists.items()}
            cache = work / "ifmr_ranges.json"
            save_tensors_data(TensorsData(CalibrationMethod.MinMax, {
                n: (np.float32(lo), np.float32(hi)) for n, (lo, hi) in ranges.items()}), cache)
            quantize_static(str(prepared), str(tmp), None, calibrate_method=CalibrationMethod.MinMax,
                            calibration_cache_path=str(cache), **common)
        else:
            ort_method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                          "entropy": CalibrationMethod.Entropy}[method]
            quantize_static(str(prepared), str(tmp), BatchReader(batches, name), calibrate_method=ort_method,
                            **common)
        qmodel = onnx.load(str(tmp))
        qmodel.metadata_props.add(key=CPU_QUANTIZER_KEY, value=json.dumps({
            "format": "onnxruntime QDQ (U8 activations, S8 weights)", "method": method,
            "calibration_batches": cfg.batch_num, "per_channel": cfg.channel_wise}))
        onnx.save(qmodel, str(tmp))
    if write_twin:
        twin = Path(f"{save_path}{FAKE_QUANT_SUFFIX}")
        with atomic_path(twin) as tmp:
            shutil.copyfile(deploy, tmp)
    n_q = sum(n.op_type == "QuantizeLinear" for n in qmodel.graph.node)
    log(f"wrote {deploy} ({method}, {cfg.batch_num} batches, {n_q} quantized tensors) in "
        f"{time.perf_counter() - start:.1f} s")
    return {"ranges": ranges, "prepared": prepared}


# --- fidelity --------------------------------------------------------------------------------------------

def load_eval_images(bins_dir, labels_path, limit: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Up to ``limit`` preprocessed test images (uint8 HWC bins, natural order) and their labels when the label
    file exists."""
    files = sorted(Path(bins_dir).glob("*.bin"), key=natural_key)[:limit]
    images = np.zeros((len(files), IMAGE_HW, IMAGE_HW, IMAGE_CHANNELS), np.uint8)
    for i, path in enumerate(files):
        raw = path.read_bytes()
        if len(raw) != IMAGE_BYTES:
            raise InputError(path, f"{len(raw)} bytes, expected {IMAGE_BYTES} (one uint8 HWC image)")
        images[i] = np.frombuffer(raw, np.uint8).reshape(images.shape[1:])
    labels = None
    if labels_path and Path(labels_path).is_file():
        table = read_labels(labels_path)
        if all(p.stem in table for p in files):
            labels = np.array([table[p.stem] for p in files])
    return images, labels


def _predict(path, x: np.ndarray, batch: int = BATCH_SIZE) -> np.ndarray:
    backend = OnnxRuntimeBackend().load(path)
    name = backend.inputs[0].name
    return np.concatenate([backend.predict({name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def compare(fp32: np.ndarray, int8: np.ndarray, labels) -> dict:
    cos = (fp32 * int8).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1) + 1e-12)
    out = {"images": int(len(fp32)), "top1_agreement": float((fp32.argmax(1) == int8.argmax(1)).mean() * 100),
           "mean_cosine": float(cos.mean()), "max_abs_diff": float(np.abs(fp32 - int8).max())}
    if labels is not None:
        out["fp32_top1"] = float((fp32.argmax(1) == labels).mean() * 100)
        out["int8_top1"] = float((int8.argmax(1) == labels).mean() * 100)
        out["top1_drop"] = out["fp32_top1"] - out["int8_top1"]
    return out


def layer_group(node_name: str) -> str:
    """stem / layer1..layer4 / head, from the exporter's node names (/backbone/layer2/...)."""
    for part in node_name.split("/"):
        if part.startswith("layer") and part[5:].isdigit():
            return part
        if part == "head":
            return "head"
    return "stem"


def fidelity_report(fp32_model, int8_model, images, labels, log: Log) -> dict:
    x = normalise(images.transpose(0, 3, 1, 2))
    fp32 = _predict(fp32_model, x)
    int8 = _predict(int8_model, x)
    report = compare(fp32, int8, labels)
    log(format_report(report))
    return {"fp32": fp32, "report": report, "x": x}


def format_report(r: dict) -> str:
    line = (f"fidelity FP32 vs INT8 on {r['images']} held-out images: top-1 agreement {r['top1_agreement']:.2f} %, "
            f"mean cosine {r['mean_cosine']:.5f}")
    if "fp32_top1" in r:
        line += (f"; top-1 FP32 {r['fp32_top1']:.2f} %, INT8 {r['int8_top1']:.2f} % "
                 f"(drop {r['top1_drop']:+.2f} points)")
    return line


def sensitivity(model_path, input_shape, data_dir, data_type, cfg, cfg_path, method, state, fp32, x,
                labels, log: Log) -> list[dict]:
    """Quantize one layer group at a time (the rest in float) and compare each with FP32."""
    model = onnx.load(str(state["prepared"]))
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        groups.setdefault(layer_group(node.name), []).append(node.name)
    rows = []
    with tempfile.TemporaryDirectory(prefix="poc-sens-") as work:
        for group, nodes in log.bar(list(groups.items()), desc="sensitivity", unit="group"):
            tmp_save = Path(work) / group
            quantize_cpu(model_path, tmp_save, input_shape, data_dir, data_type, cfg, cfg_path, Path(work), method,
                         Log(True), nodes_to_quantize=nodes, write_twin=False, prepared=state["prepared"],
                         ranges=state["ranges"])
            r = compare(fp32, _predict(f"{tmp_save}{DEPLOY_SUFFIX}", x), labels)
            rows.append({"group": group, "nodes": len(nodes), **r})
    log("sensitivity (one group quantized at a time):")
    log(f"  {'group':<7} {'nodes':>5} {'top-1 agree':>11} {'cosine':>8}" + ("  int8 top-1" if labels is not None else ""))
    for r in rows:
        log(f"  {r['group']:<7} {r['nodes']:>5} {r['top1_agreement']:>10.2f}% {r['mean_cosine']:>8.5f}"
            + (f"  {r['int8_top1']:>9.2f}%" if labels is not None else ""))
    return rows


def write_report(save_path, report: dict) -> Path:
    path = Path(f"{save_path}{REPORT_SUFFIX}")
    with atomic_file(path, "w") as f:
        json.dump(report, f, indent=2)
    return path


# --- command line ----------------------------------------------------------------------------------------

def amct_command(args) -> list[str]:
    """The ModelZoo's AMCT call, with the given values."""
    return ["amct_onnx", "calibration", "--model", str(args.model), "--save_path", str(args.save_path),
            "--input_shape", args.input_shape, "--data_dir", str(args.data_dir), "--data_types", args.data_types,
            "--calibration_config", str(args.calibration_config)]


def main(argv=None) -> int:
    import argparse

    from . import tools
    from .config import BIN_DIR, CALIB_DIR, END2END_ONNX, INPUT_SHAPE, LABEL_FILE, MODELS_DIR, QUANT_CFG, QUANT_SAVE_PATH
    from .quant_cfg import parse_quant_cfg

    p = argparse.ArgumentParser(
        prog="quantize.sh", description="Stage 4: INT8 calibration. amct_onnx calibration when AMCT is on PATH "
        "(or POC_BACKEND=ascend), else ONNX Runtime static INT8 (QDQ) on the CPU, same output names.")
    p.add_argument("--model", default=f"{MODELS_DIR}/{END2END_ONNX}", help="float ONNX model (default: %(default)s)")
    p.add_argument("--save_path", default=QUANT_SAVE_PATH,
                   help="output prefix: {save_path}_deploy_model.onnx ... (default: %(default)s)")
    p.add_argument("--input_shape", default=INPUT_SHAPE, help="NAME:N,C,H,W (default: %(default)s)")
    p.add_argument("--data_dir", default=f"{CALIB_DIR}/", help="calibration bins (default: %(default)s)")
    p.add_argument("--data_types", default="float32", help="calibration data type (default: %(default)s)")
    p.add_argument("--calibration_config", default=QUANT_CFG, help="AMCT config (default: %(default)s)")
    p.add_argument("--method", choices=METHODS, default="ifmr",
                   help="CPU calibration: ifmr (AMCT's, default), or ONNX Runtime's minmax/percentile/entropy")
    p.add_argument("--eval_bins", default=BIN_DIR, help="held-out images for the fidelity report (default: %(default)s)")
    p.add_argument("--eval_labels", default=LABEL_FILE, help="their labels, if any (default: %(default)s)")
    p.add_argument("--eval_images", type=int, default=480, help="images in the fidelity report (default: 480)")
    p.add_argument("--sensitivity", action="store_true", help="per-layer-group sensitivity table (CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress or log lines")
    args = p.parse_args(argv)
    log = Log(args.quiet, "quantize")
    backend = tools.choose("amct_onnx", tools.on_path("amct_onnx"), log)
    report: dict = {"backend": backend, "model": str(args.model), "calibration_config": str(args.calibration_config)}
    # AMCT reads its own config (it knows fields the CPU fallback does not); the fallback parses it strictly.
    cfg = parse_quant_cfg(args.calibration_config) if backend == "cpu" else None
    with tempfile.TemporaryDirectory(prefix="poc-quant-") as work:
        state = None
        if backend == "ascend":
            Path(args.save_path).parent.mkdir(parents=True, exist_ok=True)  # as the CPU path does
            tools.run_tool(amct_command(args), log)
            int8_for_report = Path(f"{args.save_path}{FAKE_QUANT_SUFFIX}")  # AMCT's twin that runs on ONNX Runtime
        else:
            state = quantize_cpu(args.model, args.save_path, args.input_shape, args.data_dir, args.data_types, cfg,
                                 args.calibration_config, Path(work), args.method, log)
            int8_for_report = Path(f"{args.save_path}{DEPLOY_SUFFIX}")
            report.update(method=args.method, batch_num=cfg.batch_num)
        images, labels = load_eval_images(args.eval_bins, args.eval_labels, args.eval_images) \
            if Path(args.eval_bins).is_dir() else (np.zeros((0,)), None)
        if len(images) and int8_for_report.is_file():
            fid = fidelity_report(args.model, int8_for_report, images, labels, log)
            report["fidelity"] = fid["report"]
            if args.sensitivity and state is not None:
                report["sensitivity"] = sensitivity(args.model, args.input_shape, args.data_dir, args.data_types,
                                                    cfg, args.calibration_config, args.method, state, fid["fp32"],
                                                    fid["x"], labels, log)
        else:
            log(f"fidelity report skipped: no held-out images in {args.eval_bins}" if not len(images)
                else f"fidelity report skipped: {int8_for_report} not found")
    log(f"wrote {write_report(args.save_path, report)}")
    return 0


if __name__ == "__main__":
    from .errors import run_main
    run_main(main)
