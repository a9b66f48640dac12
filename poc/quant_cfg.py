"""AMCT's simplified calibration config (``quant.cfg``, protobuf text format), read with protobuf itself.

The schema below is the subset of AMCT's ``calibration_config`` message that the CPU fallback honours;
an unknown field or a syntax error stops with the file name and line number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from google.protobuf.message_factory import GetMessageClass

from .errors import InputError

_F = descriptor_pb2.FieldDescriptorProto
_SCHEMA = {  # message: [(field, number, type, label, message type)]
    "AMCTConfig": [
        ("batch_num", 1, _F.TYPE_UINT32, _F.LABEL_OPTIONAL, None),
        ("activation_offset", 2, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, None),
        ("joint_quant", 3, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, None),
        ("skip_layers", 4, _F.TYPE_STRING, _F.LABEL_REPEATED, None),
        ("skip_layer_types", 5, _F.TYPE_STRING, _F.LABEL_REPEATED, None),
        ("do_fusion", 6, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, None),
        ("skip_fusion_layers", 7, _F.TYPE_STRING, _F.LABEL_REPEATED, None),
        ("common_config", 8, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "CommonConfig"),
    ],
    "CommonConfig": [
        ("arq_quantize", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "ARQuantize"),
        ("ifmr_quantize", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, "IFMRQuantize"),
    ],
    "ARQuantize": [("channel_wise", 1, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, None)],
    "IFMRQuantize": [
        ("search_range_start", 1, _F.TYPE_FLOAT, _F.LABEL_OPTIONAL, None),
        ("search_range_end", 2, _F.TYPE_FLOAT, _F.LABEL_OPTIONAL, None),
        ("search_step", 3, _F.TYPE_FLOAT, _F.LABEL_OPTIONAL, None),
        ("max_percentile", 4, _F.TYPE_FLOAT, _F.LABEL_OPTIONAL, None),
        ("min_percentile", 5, _F.TYPE_FLOAT, _F.LABEL_OPTIONAL, None),
        ("asymmetric", 6, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, None),
    ],
}


def _message_class():
    fdp = descriptor_pb2.FileDescriptorProto(name="poc_amct_calibration_config.proto", package="poc_amct",
                                             syntax="proto2")
    for msg_name, fields in _SCHEMA.items():
        msg = fdp.message_type.add(name=msg_name)
        for name, number, ftype, label, type_name in fields:
            f = msg.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".poc_amct.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return GetMessageClass(pool.FindMessageTypeByName("poc_amct.AMCTConfig"))


_AMCTConfig = _message_class()


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
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(path, "no such calibration config") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a text file") from None
    msg = _AMCTConfig()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as err:
        m = re.match(r"(\d+):(\d+)\s*:\s*(.*)", str(err))
        where, what = (f"line {m.group(1)}", m.group(3)) if m else ("", str(err))
        what = what.replace("poc_amct.", "")
        raise InputError(path, f"{where}: {what}" if where else what) from None
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
