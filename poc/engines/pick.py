"""Which engine: by name (the compile stage's --engine) or by the model file a stage is given (``.xml`` ->
OpenVINO, ``.onnx`` -> ONNX Runtime), as the runner picks it."""
from __future__ import annotations

from pathlib import Path

from poc.engines import onnxruntime, openvino

ENGINES = {"onnxruntime": onnxruntime, "openvino": openvino}  # the first is the default
BACKENDS = {"onnxruntime": onnxruntime.OnnxRuntimeBackend, "openvino": openvino.OpenVinoBackend}


def engine_of(model_path) -> str:
    return "openvino" if str(model_path).lower().endswith(openvino.SUFFIX) else "onnxruntime"


def backend_for(model_path):
    """A new backend of the engine that runs ``model_path``."""
    return BACKENDS[engine_of(model_path)]()


def compiled_path(output, engine: str) -> Path:
    """The file the compile stage writes for ``--output OUTPUT`` on ``engine``."""
    return Path(f"{output}{ENGINES[engine].SUFFIX}")
