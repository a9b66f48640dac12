"""The reference CPU engine: ONNX Runtime. Its backend, and its compile: the model with its batch fixed and AIPP
folded in front as ONNX ops, optimised offline, and on an AMX CPU the deep convolutions' weights shifted onto the
integer matrix path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from poc.formats.aipp import Aipp, fold_into_model
from poc.shared.cpu import amx_int8
from poc.shared.errors import InputError, OutputSet, regular_file
from poc.shared.progress import Log

SUFFIX = ".onnx"


def with_outputs(model: onnx.ModelProto, names: list[str], level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC):
    """A backend that runs ``model`` with the intermediate tensors ``names`` as its outputs, in that order (ONNX
    Runtime infers their types). Calibration reads activations this way, the comparison every node's output."""
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    have = {o.name for o in extended.graph.output}
    extended.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    backend = OnnxRuntimeBackend().load(extended.SerializeToString(), level=level)
    backend.outputs = list(names)
    return backend


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU."""

    def name(self) -> str:
        return "onnxruntime"

    def version(self) -> str:
        return ort.__version__

    def load(self, model, threads: int = 0, spin: bool = True, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
             optimized_path=None, profile_prefix=None) -> OnnxRuntimeBackend:
        """``model``: a path or serialized bytes. ``spin=False``: idle pool threads sleep instead of spinning
        (needed when two sessions take turns on the same cores). ``optimized_path``: also save the graph as
        optimised at ``level``. ``profile_prefix``: time every node (``session.end_profiling()`` writes the JSON)."""
        opts = ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.intra_op_num_threads = threads
        if optimized_path is not None:
            opts.optimized_model_filepath = str(optimized_path)
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if profile_prefix is not None:
            opts.enable_profiling, opts.profile_file_prefix = True, str(profile_prefix)
        source = model if isinstance(model, bytes) else str(regular_file(model, "model file"))
        try:
            self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - any load failure is one line about this file
            where = "the model" if isinstance(model, bytes) else model
            raise InputError(where, f"ONNX Runtime cannot load it ({str(err).splitlines()[0][:160]})") from None
        self.inputs = self.session.get_inputs()
        self.outputs = [o.name for o in self.session.get_outputs()]
        return self

    def input_info(self) -> list[tuple[str, np.dtype | None, list]]:
        """(name, element type, shape with None for a dynamic dimension) of every input."""
        return [(i.name, np.dtype(_ORT_TYPES[i.type]) if i.type in _ORT_TYPES else None,
                 [d if isinstance(d, int) else None for d in i.shape]) for i in self.inputs]

    def predict(self, feed: dict) -> list[np.ndarray]:
        return self.session.run(self.outputs, feed)

    # One batch at a time: submit() runs it and collect() hands its outputs back (the runner's loop is the same for
    # both engines).
    in_flight = 1

    def submit(self, feed: dict):
        return self.predict(feed)

    def collect(self, ticket) -> list[np.ndarray]:
        return ticket

    def finished_at(self, ticket) -> float | None:
        """When a collected batch finished (``time.perf_counter``); None: when ``collect`` returned (submit ran it)."""
        return None



_ORT_TYPES = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(float)": np.float32,
              "tensor(float16)": np.float16, "tensor(int32)": np.int32, "tensor(int64)": np.int64}




def compile_model(model: onnx.ModelProto, aipp: Aipp | None, shape: list[int], name: str, precision: str, out: Path,
                  outputs: OutputSet, log: Log) -> Path:
    """``out`` (.onnx): ``model`` with its batch fixed to ``shape`` and ``aipp`` folded in front, optimised. ONNX
    Runtime computes in FP32 (``precision`` is always "f32" here)."""
    model = fold_into_model(model, aipp, shape, input_name=name)
    with outputs:
        tmp = outputs.file(out)
        raw = tmp.with_suffix(".raw.onnx")
        onnx.save(model, str(raw))
        try:
            # EXTENDED folds QDQ pairs into QLinear kernels and fuses Conv+Relu; ALL would add NCHWc layout
            # changes that tie the file to this CPU, so those are left to the session that runs it.
            OnnxRuntimeBackend().load(raw, level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                      optimized_path=tmp)
        finally:
            raw.unlink(missing_ok=True)
        shifted = 0
        if amx_int8():
            optimised = onnx.load(str(tmp))
            shifted = shift_weight_zero_points(optimised)
            if shifted:
                onnx.save(optimised, str(tmp))
    log(f"wrote {out}: input {name} " + (f"uint8 NHWC [{shape[0]},{aipp.src_h},{aipp.src_w},3] with AIPP "
                                         f"folded in" if aipp else f"float32 NCHW {shape}")
        + ", optimised by ONNX Runtime"
        + (f"; {shifted} convolutions' weights on zero point -1 (this CPU's AMX path)" if shifted else ""))
    return out


# The shallowest convolution (input channels x kernel height x kernel width) worth ONNX Runtime's AMX path, chosen
# from per-layer profiles on an AMX CPU (docs/PERFORMANCE.md): the layers of depth 64 and 128 ran faster in the
# symmetric kernel (an AMX tile reduces 64 values a step, and the other path also sums every input row for the zero
# point), those from 256 on ran faster on AMX.
MIN_AMX_DEPTH = 256


def shift_weight_zero_points(model: onnx.ModelProto, min_depth: int = MIN_AMX_DEPTH) -> int:
    """Every QLinearConv of depth ``min_depth`` or more with int8 weights on zero point 0 gets the same weights minus
    one on zero point -1: the same numbers ((w - 1) - (-1) = w), exactly the same outputs. ONNX Runtime runs
    convolutions with zero-point-0 weights in its symmetric kernel, which has no AMX code, and the others as im2col +
    its integer matrix multiply, which uses AMX: the whole ResNet-50 runs faster on an AMX CPU with every layer moved,
    faster still with the shallow ones left (docs/PERFORMANCE.md). Weights that already use -128 cannot move down and are
    left as they are. Returns how many convolutions changed."""
    from onnx import numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    changed = 0
    for node in model.graph.node:
        if node.op_type != "QLinearConv" or len(node.input) < 6:
            continue
        w, zp = inits.get(node.input[3]), inits.get(node.input[5])
        if w is None or zp is None or uses[w.name] > 1 or uses[zp.name] > 1:  # shared: changing it changes others
            continue
        weights, zero = numpy_helper.to_array(w), numpy_helper.to_array(zp)
        if weights.dtype != np.int8 or zero.dtype != np.int8 or zero.any() or weights.min() == -128 \
                or weights.ndim < 2 or int(np.prod(weights.shape[1:])) < min_depth:
            continue
        w.CopyFrom(numpy_helper.from_array((weights.astype(np.int16) - 1).astype(np.int8), w.name))
        zp.CopyFrom(numpy_helper.from_array(np.full_like(zero, -1), zp.name))
        changed += 1
    return changed

