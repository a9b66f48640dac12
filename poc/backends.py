"""CPU inference backends, each a small object as in the MLPerf inference reference (name, version, load,
predict), and the one place an ONNX file is parsed."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from .errors import InputError


def load_onnx(path, load_external_data: bool = True) -> onnx.ModelProto:
    """Parse an ONNX file; anything unreadable is one line about the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such model file")
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except Exception as err:  # noqa: BLE001 - any parse failure is one line about this file
        raise InputError(path, f"not an ONNX model ({type(err).__name__})") from None


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU."""

    def name(self) -> str:
        return "onnxruntime"

    def version(self) -> str:
        return ort.__version__

    def load(self, model, threads: int = 0, spin: bool = True, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
             optimized_path=None) -> OnnxRuntimeBackend:
        """``model``: a path or serialized bytes. ``spin=False``: idle pool threads sleep instead of spinning
        (needed when two sessions take turns on the same cores). ``optimized_path``: also save the graph as
        optimised at ``level``."""
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.intra_op_num_threads = threads
        if optimized_path is not None:
            opts.optimized_model_filepath = str(optimized_path)
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - any load failure is one line about this file
            where = "the model" if isinstance(model, bytes) else model
            raise InputError(where, f"ONNX Runtime cannot load it ({str(err).splitlines()[0][:160]})") from None
        self.inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]
        return self

    def predict(self, feed: dict) -> list[np.ndarray]:
        return self.session.run(self.outputs, feed)


@dataclass
class InputSpec:
    """The one input a compiled model takes: its name, element type and (batch-fixed) shape."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


_ORT_TYPES = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float)": np.float32,
              "tensor(float16)": np.float16, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


def input_spec(backend: OnnxRuntimeBackend, model_path, batchsize: int | None) -> InputSpec:
    """The model's single input; a dynamic batch is fixed to ``batchsize`` (1 when not given)."""
    if len(backend.inputs) != 1:
        raise InputError(model_path, f"has {len(backend.inputs)} inputs; the runner feeds single-input models")
    node = backend.inputs[0]
    if node.type not in _ORT_TYPES:
        raise InputError(model_path, f"input type {node.type} is not supported")
    shape = list(node.shape)
    if shape and not isinstance(shape[0], int):
        shape[0] = batchsize or 1
    if not all(isinstance(d, int) and d > 0 for d in shape):
        raise InputError(model_path, f"input shape {node.shape} is dynamic beyond the batch; compile it with "
                                     "atc_convert.sh first")
    return InputSpec(node.name, np.dtype(_ORT_TYPES[node.type]), tuple(shape))
