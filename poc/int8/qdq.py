"""Stage 4, part 2: the INT8 model the CPU fallback writes: ONNX Runtime static INT8 in QDQ form.

uint8 activations (asymmetric when ``activation_offset: true``) with int8 per-channel weights: the U8S8 path
that x86 integer dot-product instructions (VNNI) run. The ranges come from ``calibrate`` (IFMR), or from ONNX
Runtime's own calibrators for comparison.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data
from onnxruntime.quantization.shape_inference import quant_pre_process

from poc.config import CPU_QUANTIZER_KEY
from poc.formats.model_file import load_onnx
from poc.formats.quant_cfg import QuantConfig
from poc.int8.calibrate import BatchReader, Ranges
from poc.shared.errors import InputError
from poc.shared.progress import Log

QDQ_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (the axis attribute) needs opset 13
# Ops quantized on the CPU. Softmax stays float: uint8 probabilities would lose everything below 1/255.
QUANT_OP_TYPES = ["Conv", "Gemm", "MatMul", "Add", "Relu", "GlobalAveragePool", "AveragePool", "MaxPool"]
# Layer types AMCT quantizes, and so the only ones skip_layers / skip_layer_types may name.
AMCT_QUANTIZABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul", "AveragePool")
METHODS = ("ifmr", "minmax", "percentile", "entropy")
_ORT_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                "entropy": CalibrationMethod.Entropy}


def prepare_float_model(model_path, work: Path) -> Path:
    """Opset >= 13 (per-channel QDQ) and ONNX Runtime's recommended pre-processing (shape inference)."""
    model = load_onnx(model_path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    upgraded = work / "opset13.onnx"
    onnx.save(model, str(upgraded))
    prepared = work / "prepared.onnx"
    quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=False)
    return prepared


def check_skip_layers(model: onnx.ModelProto, cfg: QuantConfig, cfg_path) -> None:
    """skip_layers / skip_layer_types must name quantizable layers of ``model`` (as in AMCT): checked on the model as
    given, before the work of preparing and calibrating it."""
    types = {n.name: n.op_type for n in model.graph.node}
    unknown = [s for s in cfg.skip_layers if s not in types]
    if unknown:
        raise InputError(cfg_path, f"skip_layers names no node of the model: {', '.join(unknown[:5])}")
    not_quantizable = sorted({f"{s} ({types[s]})" for s in cfg.skip_layers if types[s] not in AMCT_QUANTIZABLE}
                             | {t for t in cfg.skip_layer_types if t not in AMCT_QUANTIZABLE})
    if not_quantizable:
        raise InputError(cfg_path, f"skip_layers / skip_layer_types name layers that are not quantized: "
                                   f"{', '.join(not_quantizable[:5])} (quantizable: {', '.join(AMCT_QUANTIZABLE)})")


def excluded_nodes(model: onnx.ModelProto, cfg: QuantConfig, cfg_path, log: Log) -> list[str]:
    """Nodes left in float for skip_layers / skip_layer_types, which (as in AMCT) name quantizable layers."""
    check_skip_layers(model, cfg, cfg_path)
    skip = list(cfg.skip_layers) + [n.name for n in model.graph.node if n.op_type in cfg.skip_layer_types]
    # A Relu right after a skipped node stays float with it: quantizing the Relu would put a Q node on the
    # skipped node's output, and ONNX Runtime would then fuse DQ -> node -> Q into an integer kernel anyway.
    skipped_outputs = {o for n in model.graph.node if n.name in skip for o in n.output}
    skip += [n.name for n in model.graph.node if n.op_type == "Relu" and n.input[0] in skipped_outputs]
    if skip:
        log(f"left in float: {len(skip)} nodes (skip_layers / skip_layer_types)")
    return skip


@dataclass
class QdqSettings:
    """How the QDQ model is made: from quant.cfg, plus which nodes are quantized or left in float."""

    activation_offset: bool
    channel_wise: bool
    method: str = "ifmr"
    exclude: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None  # quantize just these nodes (a sensitivity run)


def write_qdq(prepared: Path, out: Path, settings: QdqSettings, work: Path, ranges: Ranges | None = None,
              batches=None, input_name: str = "input", batch_num: int = 0) -> onnx.ModelProto:
    """Quantize ``prepared`` into ``out`` with the IFMR ``ranges`` (method ifmr) or ONNX Runtime's calibrator
    over ``batches``; the CPU quantizer's metadata goes into the file."""
    common = dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                  per_channel=settings.channel_wise, op_types_to_quantize=QUANT_OP_TYPES,
                  nodes_to_exclude=list(settings.exclude),
                  nodes_to_quantize=list(settings.only) if settings.only is not None else None,
                  extra_options={"ActivationSymmetric": not settings.activation_offset, "WeightSymmetric": True})
    if settings.method == "ifmr":
        cache = work / "ifmr_ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, {
            n: (np.float32(lo), np.float32(hi)) for n, (lo, hi) in ranges.items()}), cache)
        quantize_static(str(prepared), str(out), None, calibrate_method=CalibrationMethod.MinMax,
                        calibration_cache_path=str(cache), **common)
    else:
        quantize_static(str(prepared), str(out), BatchReader(batches, input_name),
                        calibrate_method=_ORT_METHODS[settings.method], **common)
    qmodel = onnx.load(str(out))
    qmodel.metadata_props.add(key=CPU_QUANTIZER_KEY, value=json.dumps({
        "format": "onnxruntime QDQ (U8 activations, S8 weights)", "method": settings.method,
        "calibration_batches": batch_num, "per_channel": settings.channel_wise}))
    onnx.save(qmodel, str(out))
    return qmodel
