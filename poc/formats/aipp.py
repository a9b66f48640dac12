"""AIPP (``aipp.conf``): parse ATC's insert-op config and fold it in front of an ONNX model.

ATC inserts the AIPP stage into the OM: the model then takes uint8 NHWC images and does, per channel,
``out = (in - mean_chn_i - min_chn_i) * var_reci_chn_i``. The CPU fallback emulates exactly that with ONNX
ops (Cast, Slice for the crop, Gather for the R/B swap, Sub, Mul, Transpose) and refuses whatever it cannot
emulate, rather than ignoring it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from poc.shared.errors import InputError
from poc.shared.prototext import F as _F
from poc.shared.prototext import message_class, parse_file

INPUT_FORMATS = ("UNDEFINED", "YUV420SP_U8", "XRGB8888_U8", "RGB888_U8", "YUV400_U8", "NC1HWC0DI_FP16",
                 "NC1HWC0DI_S8", "ARGB8888_U8", "YUYV_U8", "YUV422SP_U8", "AYUV444_U8", "RAW10", "RAW12",
                 "RAW16", "RAW24", "RGB16", "RGB20", "RGB24", "RGB8_IR", "RGB16_IR", "RGB24_IR")
_BOOL, _INT, _FLOAT, _ENUM, _MSG = _F.TYPE_BOOL, _F.TYPE_INT32, _F.TYPE_FLOAT, _F.TYPE_ENUM, _F.TYPE_MESSAGE
# The AippOpParams fields of ATC's insert_op.proto (the text format goes by name, so numbers are ours).
_AIPP_FIELDS = [("aipp_mode", _ENUM, "AippMode"), ("related_input_rank", _INT, None),
                ("input_format", _ENUM, "InputFormat"), ("src_image_size_w", _INT, None),
                ("src_image_size_h", _INT, None), ("crop", _BOOL, None), ("load_start_pos_w", _INT, None),
                ("load_start_pos_h", _INT, None), ("crop_size_w", _INT, None), ("crop_size_h", _INT, None),
                ("resize", _BOOL, None), ("resize_output_w", _INT, None), ("resize_output_h", _INT, None),
                ("padding", _BOOL, None), ("left_padding_size", _INT, None), ("right_padding_size", _INT, None),
                ("top_padding_size", _INT, None), ("bottom_padding_size", _INT, None),
                ("csc_switch", _BOOL, None), ("rbuv_swap_switch", _BOOL, None), ("ax_swap_switch", _BOOL, None),
                ("single_line_mode", _BOOL, None), ("max_src_image_size", _INT, None),
                ("support_rotation", _BOOL, None)]
_AIPP_FIELDS += [(f"matrix_r{r}c{c}", _INT, None) for r in range(3) for c in range(3)]
_AIPP_FIELDS += [(f"{k}_bias_{i}", _INT, None) for k in ("output", "input") for i in range(3)]
_AIPP_FIELDS += [(f"mean_chn_{i}", _INT, None) for i in range(4)]
_AIPP_FIELDS += [(f"min_chn_{i}", _FLOAT, None) for i in range(4)]
_AIPP_FIELDS += [(f"var_reci_chn_{i}", _FLOAT, None) for i in range(4)]
# Fields the CPU fallback cannot emulate when they are switched on / set away from their neutral value.
_UNSUPPORTED_SWITCHES = ("resize", "padding", "csc_switch", "ax_swap_switch", "single_line_mode",
                         "support_rotation")


_InsertNewOps = message_class(
    "poc_aipp", {"AippOpParams": [(name, ftype, _F.LABEL_OPTIONAL, type_name) for name, ftype, type_name in _AIPP_FIELDS],
                 "InsertNewOps": [("aipp_op", _MSG, _F.LABEL_REPEATED, "AippOpParams")]},
    "InsertNewOps", enums={"AippMode": ["undefined", "static", "dynamic"], "InputFormat": list(INPUT_FORMATS)})


@dataclass
class Aipp:
    """The static AIPP stage as the CPU fallback applies it, on uint8 NHWC RGB888 input."""

    src_w: int
    src_h: int
    crop: tuple[int, int, int, int] | None  # (start_h, start_w, size_h, size_w) when crop: true
    swap_rb: bool
    mean: tuple[float, float, float]
    min: tuple[float, float, float]
    var_reci: tuple[float, float, float]

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.crop[2], self.crop[3]) if self.crop else (self.src_h, self.src_w)

    def apply(self, nhwc_uint8: np.ndarray) -> np.ndarray:
        """Reference implementation in numpy: uint8 [n,H,W,3] -> float32 [n,3,h,w]."""
        x = nhwc_uint8.astype(np.float32)
        if self.crop:
            h0, w0, h, w = self.crop
            x = x[:, h0:h0 + h, w0:w0 + w]
        if self.swap_rb:
            x = x[..., ::-1]
        x = (x - np.float32(self.mean) - np.float32(self.min)) * np.float32(self.var_reci)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def parse_aipp(path) -> Aipp:
    path = Path(path)
    msg = parse_file(path, _InsertNewOps, "AIPP config")
    if len(msg.aipp_op) != 1:
        raise InputError(path, f"expected one aipp_op block, found {len(msg.aipp_op)}")
    op = msg.aipp_op[0]

    def cannot(what):
        raise InputError(path, f"{what}: the CPU fallback cannot emulate this (only static RGB888_U8 with "
                               "crop, rbuv_swap_switch, mean/min/var_reci)")

    mode = _field_enum_name(op, "aipp_mode")
    if mode != "static":
        cannot(f"aipp_mode: {mode or 'unset'}")
    fmt = _field_enum_name(op, "input_format")
    if fmt != "RGB888_U8":
        cannot(f"input_format: {fmt or 'unset'}")
    for name in _UNSUPPORTED_SWITCHES:
        if getattr(op, name):
            cannot(f"{name}: true")
    if op.related_input_rank:
        cannot(f"related_input_rank: {op.related_input_rank}")
    if not (op.src_image_size_w > 0 and op.src_image_size_h > 0):
        raise InputError(path, "src_image_size_w and src_image_size_h must be set (static AIPP)")
    crop = None
    if op.crop:
        h0, w0 = op.load_start_pos_h, op.load_start_pos_w
        h = op.crop_size_h or op.src_image_size_h - h0
        w = op.crop_size_w or op.src_image_size_w - w0
        if h0 < 0 or w0 < 0 or h <= 0 or w <= 0 or h0 + h > op.src_image_size_h or w0 + w > op.src_image_size_w:
            raise InputError(path, f"crop {h}x{w} at ({h0},{w0}) does not fit the "
                                   f"{op.src_image_size_h}x{op.src_image_size_w} source")
        crop = (h0, w0, h, w)
    if op.HasField("mean_chn_3") or op.HasField("min_chn_3") or op.HasField("var_reci_chn_3"):
        cannot("a 4th channel (mean/min/var_reci_chn_3)")
    chn = lambda prefix, default: tuple(float(getattr(op, f"{prefix}_{i}")) if op.HasField(f"{prefix}_{i}")  # noqa: E731
                                        else default for i in range(3))
    aipp = Aipp(op.src_image_size_w, op.src_image_size_h, crop, bool(op.rbuv_swap_switch),
                chn("mean_chn", 0.0), chn("min_chn", 0.0), chn("var_reci_chn", 1.0))
    _check_normalisation(path, aipp)
    return aipp


MAX_SOURCE_SIDE = 4096  # ATC's static AIPP limit on src_image_size_w / _h


def _check_normalisation(path: Path, aipp: Aipp) -> None:
    """Refuse values that cannot be a normalisation of uint8 pixels (they compile into a model that gives one
    output for every image), naming the line they are on."""
    text = path.read_text()

    def bad(field: str, problem: str):
        m = re.search(rf"^\s*{field}\s*:", text, re.MULTILINE)
        where = f"line {text[:m.start()].count(chr(10)) + 1}: " if m else ""
        raise InputError(path, f"{where}{field} {problem}")

    for side, value in (("src_image_size_w", aipp.src_w), ("src_image_size_h", aipp.src_h)):
        if value > MAX_SOURCE_SIDE:
            bad(side, f"{value} is larger than {MAX_SOURCE_SIDE}")
    for i in range(3):
        if not 0 <= aipp.mean[i] <= 255:
            bad(f"mean_chn_{i}", f"{aipp.mean[i]:g} is outside the uint8 input range 0..255")
        if not (math.isfinite(aipp.min[i]) and -255 <= aipp.min[i] <= 255):
            bad(f"min_chn_{i}", f"{aipp.min[i]:g}: a per-channel offset of uint8 pixels must be finite and within "
                                "-255..255")
        if not (math.isfinite(aipp.var_reci[i]) and 0 < aipp.var_reci[i] <= 1e4):
            bad(f"var_reci_chn_{i}", f"{aipp.var_reci[i]:g}: a reciprocal of a standard deviation must be finite "
                                     "and above 0 (at most 1e4)")


def _field_enum_name(op, name) -> str | None:
    if not op.HasField(name):
        return None
    return op.DESCRIPTOR.fields_by_name[name].enum_type.values_by_number[getattr(op, name)].name


def fold_into_model(model: onnx.ModelProto, aipp: Aipp | None, shape: list[int], input_name: str) -> onnx.ModelProto:
    """The model with its input fixed to ``shape`` (N,C,H,W) and, if ``aipp`` is given, the AIPP stage in front:
    its input then becomes uint8 NHWC [N, src_h, src_w, 3] like the OM's."""
    graph = model.graph
    old_input = next(i for i in graph.input if i.name == input_name)
    batch = shape[0]
    if aipp is None:
        new_input = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(shape))
        prefix = []
    else:
        inner = "aipp_output"
        for node in graph.node:
            node.input[:] = [inner if x == input_name else x for x in node.input]
        new_input = helper.make_tensor_value_info(input_name, TensorProto.UINT8, [batch, aipp.src_h, aipp.src_w, 3])
        prefix, inits = _aipp_nodes(aipp, input_name, inner)
        graph.initializer.extend(inits)
    graph.input.remove(old_input)
    graph.input.insert(0, new_input)
    nodes = prefix + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    for out in graph.output:  # fix the batch of every output too
        dims = out.type.tensor_type.shape.dim
        if len(dims) and not dims[0].dim_value:
            dims[0].dim_value = batch
    del graph.value_info[:]  # stale dynamic shapes; ORT re-infers them
    return model


def _aipp_nodes(aipp: Aipp, src: str, dst: str):
    inits, nodes = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    x = "aipp_cast"
    nodes.append(helper.make_node("Cast", [src], [x], to=TensorProto.FLOAT, name="aipp/Cast"))
    if aipp.crop:
        h0, w0, h, w = aipp.crop
        nodes.append(helper.make_node("Slice", [x, const("aipp_crop_starts", np.int64([h0, w0])),
                                                const("aipp_crop_ends", np.int64([h0 + h, w0 + w])),
                                                const("aipp_crop_axes", np.int64([1, 2]))], ["aipp_crop"],
                                      name="aipp/Crop"))
        x = "aipp_crop"
    if aipp.swap_rb:
        nodes.append(helper.make_node("Gather", [x, const("aipp_swap_idx", np.int64([2, 1, 0]))], ["aipp_swap"],
                                      axis=3, name="aipp/RBSwap"))
        x = "aipp_swap"
    offset = np.float32(aipp.mean) + np.float32(aipp.min)
    nodes.append(helper.make_node("Sub", [x, const("aipp_offset", offset.reshape(1, 1, 1, 3))], ["aipp_sub"],
                                  name="aipp/Sub"))
    nodes.append(helper.make_node("Mul", ["aipp_sub", const("aipp_var_reci", np.float32(aipp.var_reci).reshape(1, 1, 1, 3))],
                                  ["aipp_mul"], name="aipp/Mul"))
    nodes.append(helper.make_node("Transpose", ["aipp_mul"], [dst], perm=[0, 3, 1, 2], name="aipp/ToNCHW"))
    return nodes, inits
