"""AMCT's simplified calibration config (``quant.cfg``, protobuf text format), read with protobuf itself.

The schema below is the subset of AMCT's ``calibration_config`` message that the CPU fallback knows; an unknown
field or a syntax error stops with the file name and line number, a value AMCT would refuse stops with its
range, and a field the fallback cannot honour is named in the log (``describe``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from poc.shared.errors import InputError
from poc.shared.prototext import F, message_class, parse_file

_OPT, _REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
_SCHEMA = {  # message: [(field, type, label, message type)]
    "AMCTConfig": [
        ("batch_num", F.TYPE_UINT32, _OPT, None), ("activation_offset", F.TYPE_BOOL, _OPT, None),
        ("joint_quant", F.TYPE_BOOL, _OPT, None), ("skip_layers", F.TYPE_STRING, _REP, None),
        ("skip_layer_types", F.TYPE_STRING, _REP, None), ("do_fusion", F.TYPE_BOOL, _OPT, None),
        ("skip_fusion_layers", F.TYPE_STRING, _REP, None), ("common_config", F.TYPE_MESSAGE, _OPT, "CommonConfig"),
    ],
    "CommonConfig": [("arq_quantize", F.TYPE_MESSAGE, _OPT, "ARQuantize"),
                     ("ifmr_quantize", F.TYPE_MESSAGE, _OPT, "IFMRQuantize")],
    "ARQuantize": [("channel_wise", F.TYPE_BOOL, _OPT, None)],
    "IFMRQuantize": [(name, F.TYPE_FLOAT, _OPT, None) for name in (
        "search_range_start", "search_range_end", "search_step", "max_percentile", "min_percentile")]
    + [("asymmetric", F.TYPE_BOOL, _OPT, None)],
}


_AMCTConfig = message_class("poc_amct", _SCHEMA, "AMCTConfig")


@dataclass
class QuantConfig:
    """quant.cfg with AMCT's defaults filled in."""

    batch_num: int = 1
    activation_offset: bool = True
    joint_quant: bool = False
    do_fusion: bool = True
    skip_layers: list[str] = field(default_factory=list)
    skip_layer_types: list[str] = field(default_factory=list)
    skip_fusion_layers: list[str] = field(default_factory=list)
    channel_wise: bool = True
    search_range_start: float = 0.7
    search_range_end: float = 1.3
    search_step: float = 0.01
    max_percentile: float = 0.999999
    min_percentile: float = 0.999999
    asymmetric: bool | None = None  # ifmr_quantize's own switch; when set it decides over activation_offset


def parse_quant_cfg(path) -> QuantConfig:
    msg = parse_file(path, _AMCTConfig, "calibration config")
    cfg = QuantConfig()
    for name in ("batch_num", "activation_offset", "joint_quant", "do_fusion"):
        if msg.HasField(name):
            setattr(cfg, name, getattr(msg, name))
    for name in ("skip_layers", "skip_layer_types", "skip_fusion_layers"):
        setattr(cfg, name, list(getattr(msg, name)))
    common = msg.common_config
    if common.arq_quantize.HasField("channel_wise"):
        cfg.channel_wise = common.arq_quantize.channel_wise
    ifmr = common.ifmr_quantize
    for name in ("search_range_start", "search_range_end", "search_step", "max_percentile", "min_percentile"):
        if ifmr.HasField(name):
            setattr(cfg, name, round(float(getattr(ifmr, name)), 7))  # float32 -> the decimal written
    if ifmr.HasField("asymmetric"):
        cfg.asymmetric = ifmr.asymmetric
        cfg.activation_offset = ifmr.asymmetric
    _validate(path, cfg)
    return cfg


def describe(cfg: QuantConfig, path) -> list[str]:
    """Log lines: what the CPU fallback does with the config, including the fields it cannot honour."""
    lines = [f"calibration config {path}: batch_num {cfg.batch_num}, activation_offset {cfg.activation_offset}"
             + (" (from ifmr_quantize asymmetric)" if cfg.asymmetric is not None else "")
             + f", channel_wise {cfg.channel_wise}, IFMR [{cfg.search_range_start}, {cfg.search_range_end}] step "
             f"{cfg.search_step}, percentiles max {cfg.max_percentile} min {cfg.min_percentile}",
             f"joint_quant {cfg.joint_quant}, do_fusion {cfg.do_fusion}: accepted; on the CPU ONNX Runtime fuses "
             "Conv+Relu and QDQ pairs itself, and joint quantization has no counterpart"]
    if cfg.skip_fusion_layers:
        lines.append(f"skip_fusion_layers ({len(cfg.skip_fusion_layers)}): not honoured on the CPU: ONNX Runtime's "
                     "fusions cannot be switched off per layer")
    return lines


MAX_BATCH_NUM = 10_000
MAX_SEARCH_POINTS = 10_000  # (end - start) / step + 1: each point costs a pass over every histogram


def _validate(path, cfg: QuantConfig) -> None:
    if not 1 <= cfg.batch_num <= MAX_BATCH_NUM:
        raise InputError(path, f"batch_num must be at least 1 (and at most {MAX_BATCH_NUM})")
    start, end, step = cfg.search_range_start, cfg.search_range_end, cfg.search_step
    if not all(math.isfinite(v) for v in (start, end, step, cfg.max_percentile, cfg.min_percentile)):
        raise InputError(path, "ifmr_quantize values must be finite numbers")
    if not 0 < start <= end <= 100:
        raise InputError(path, "ifmr_quantize needs 0 < search_range_start <= search_range_end <= 100")
    if step <= 0:
        raise InputError(path, "ifmr_quantize search_step must be positive")
    if (end - start) / step + 1 > MAX_SEARCH_POINTS:
        raise InputError(path, f"ifmr_quantize searches {int((end - start) / step) + 1} clip factors "
                               f"(range / search_step); at most {MAX_SEARCH_POINTS}")
    for name in ("max_percentile", "min_percentile"):
        if not 0.5 < getattr(cfg, name) <= 1.0:
            raise InputError(path, f"ifmr_quantize {name} must be in (0.5, 1]")
