"""Model files as files: the one place an ONNX file is parsed, and which weights a model (ONNX or OpenVINO IR) was
made from, so that figures of two networks are never set side by side."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import onnx

from poc.config import SOURCE_KEY
from poc.shared.errors import InputError, regular_file

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


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




def has_qdq(model: onnx.ModelProto) -> bool:
    """The graph holds QuantizeLinear/DequantizeLinear pairs (a QDQ model, as the CPU quantizer writes)."""
    return any(n.op_type in QDQ_OPS for n in model.graph.node)
