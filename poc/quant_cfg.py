"""AMCT's simplified calibration config (``quant.cfg``, protobuf text format), read with protobuf itself.

The schema below is the subset of AMCT's ``calibration_config`` message that the CPU fallback honours;
an unknown field or a syntax error stops with the file name and line number.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InputError
from .prototext import F, message_class, parse_file

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
    _validate(path, cfg)
    return cfg


def _validate(path, cfg: QuantConfig) -> None:
    if cfg.batch_num < 1:
        raise InputError(path, "batch_num must be at least 1")
    if not 0 < cfg.search_range_start <= cfg.search_range_end:
        raise InputError(path, "ifmr_quantize needs 0 < search_range_start <= search_range_end")
    if cfg.search_step <= 0:
        raise InputError(path, "ifmr_quantize search_step must be positive")
    for name in ("max_percentile", "min_percentile"):
        if not 0.5 < getattr(cfg, name) <= 1.0:
            raise InputError(path, f"ifmr_quantize {name} must be in (0.5, 1]")
