"""What the CPU can do, for the benchmark: its practical multiply-add rate per precision (a large matrix multiply
on the same engine and threads as the network, INT8 in the same QDQ form the network uses), and how many
multiply-adds a network takes per image (from the float ONNX model's shapes)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

from poc.engines.onnxruntime import OnnxRuntimeBackend
from poc.engines.openvino import OpenVinoBackend, native_bf16
from poc.formats.model_file import load_onnx

MATMUL_N = 2048  # the matrix multiply: [N,N] x [N,N], 8.6 GMAC a run
# the 1x1 convolutions: a chain of CONV_DEPTH layers C -> C channels over a batch of CONV_BATCH maps of HW x HW
# pixels (4.3 GMAC a run), so the conversions at the graph's input and output weigh as little as they do in a network;
# a batch of 2, so that an engine that spreads a batch over its streams (OpenVINO) does so here too
CONV_C, CONV_HW, CONV_DEPTH, CONV_BATCH = 512, 32, 8, 2


def _model(op: str, precision: str) -> tuple[onnx.ModelProto, list[int], int]:
    """Y = op(A, W) with W a constant: a matrix multiply or a 1x1 convolution (the kernel a ResNet spends most of
    its time in). For int8 A and W go through QuantizeLinear/DequantizeLinear (uint8 activations, int8 weights),
    so each engine fuses it into its integer kernel exactly as it does the network's layers.
    Returns the model, the input's shape and the multiply-adds of one run."""
    rng = np.random.default_rng(0)
    if op == "matmul":
        shape, w = [MATMUL_N, MATMUL_N], rng.standard_normal((MATMUL_N, MATMUL_N)).astype(np.float32)
        macs, out_shape = MATMUL_N ** 3, [MATMUL_N, MATMUL_N]
    else:
        shape = [CONV_BATCH, CONV_C, CONV_HW, CONV_HW]
        w = (rng.standard_normal((CONV_C, CONV_C, 1, 1)) / np.sqrt(CONV_C)).astype(np.float32)
        macs, out_shape = CONV_BATCH * CONV_DEPTH * CONV_C * CONV_C * CONV_HW * CONV_HW, list(shape)
    kernel = "MatMul" if op == "matmul" else "Conv"
    depth = 1 if op == "matmul" else CONV_DEPTH
    inits, nodes, x = [], [], "a"
    if precision == "int8":
        inits += [numpy_helper.from_array(np.float32(0.05), "a_scale"), numpy_helper.from_array(np.uint8(128), "a_zero"),
                  numpy_helper.from_array(np.clip(np.round(w * 40), -127, 127).astype(np.int8), "w_q"),
                  numpy_helper.from_array(np.float32(1 / 40), "w_scale"), numpy_helper.from_array(np.int8(0), "w_zero")]
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"]))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    for i in range(depth):
        y = "y" if i == depth - 1 else f"y{i}"
        if precision == "int8":
            nodes += [helper.make_node("QuantizeLinear", [x, "a_scale", "a_zero"], [f"{x}_q"]),
                      helper.make_node("DequantizeLinear", [f"{x}_q", "a_scale", "a_zero"], [f"{x}_dq"])]
            x = f"{x}_dq"
        nodes.append(helper.make_node(kernel, [x, "w"], [y]))
        x = y
    graph = helper.make_graph(nodes, f"{op}_{precision}", [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model, shape, macs


@dataclass
class Probe:
    """One rate probe loaded on its engine: a model whose multiply-adds per run are known."""

    engine: str
    precision: str
    op: str
    macs: int
    backend: object
    feed: dict

    @property
    def name(self) -> str:
        return f"peak {self.engine} {self.precision} ({self.op})"


def load_probe(engine: str, precision: str, op: str, folder) -> Probe:
    """``op`` (matmul or conv1x1) at ``precision`` (int8, bf16, fp32) on ``engine``, its model written to ``folder``."""
    model, shape, macs = _model(op, "int8" if precision == "int8" else "fp32")
    path = Path(folder) / f"probe_{op}_{precision}_{engine}.onnx"
    onnx.save(model, str(path))
    if engine == "openvino":
        backend = OpenVinoBackend().load(path, precision="bf16" if precision == "bf16" else "f32")
    else:
        backend = OnnxRuntimeBackend().load(path)  # as the networks are loaded
    return Probe(engine, precision, op, macs, backend,
                 {"a": np.random.default_rng(1).standard_normal(shape).astype(np.float32)})


def rate(probe: Probe, runs: int = 10, warmup: int = 2) -> float:
    """The median multiply-add rate (GMAC/s) of ``runs`` runs of a probe."""
    for _ in range(warmup):
        probe.backend.predict(probe.feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        probe.backend.predict(probe.feed)
        times.append(time.perf_counter() - t0)
    return probe.macs / float(np.median(times)) / 1e9


def probes(engines, folder, trial_runs: int = 3) -> list[Probe]:
    """Per engine and precision (INT8, FP32, and BF16 on OpenVINO where the CPU has it) the faster of a large matrix
    multiply and a large 1x1 convolution (engines differ in which they do best), by a short trial; the benchmark then
    times the chosen ones in the same alternating rounds as the networks."""
    chosen = []
    for engine in engines:
        for precision in ["int8", "fp32"] + (["bf16"] if engine == "openvino" and native_bf16() else []):
            pair = [load_probe(engine, precision, op, folder) for op in ("matmul", "conv1x1")]
            chosen.append(max(pair, key=lambda pr: rate(pr, trial_runs, warmup=1)))
    return chosen


@dataclass
class LayerMacs:
    """A Conv, Gemm or MatMul of a float model: its multiply-adds per image, weight shape and output shape."""

    op: str
    macs: int
    weight: list[int]
    output: list[int]


def layer_macs(onnx_path, input_name: str, chw: tuple[int, int, int]) -> dict[str, LayerMacs]:
    """Every Conv, Gemm and MatMul with a constant weight of a float ONNX model, by node name, at one image of
    ``chw``."""
    model = load_onnx(onnx_path)
    for inp in model.graph.input:
        if inp.name == input_name:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, (1, *chw), strict=True):
                d.Clear()
                d.dim_value = v
    model = shape_inference.infer_shapes(model)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    layers = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in shapes and node.output[0] in shapes:
            w, y = shapes[node.input[1]], shapes[node.output[0]]
            layers[node.name] = LayerMacs("Conv", int(np.prod(y)) * int(np.prod(w[1:])), w, y)
        elif node.op_type in ("Gemm", "MatMul") and node.input[1] in shapes:
            # a classifier head: one row per image, so K x N multiply-adds = the weight's size (rows known or 1)
            w, y = shapes[node.input[1]], shapes.get(node.output[0]) or []
            rows = int(np.prod(y[:-1])) if len(y) > 1 and all(y) else 1
            layers[node.name] = LayerMacs(node.op_type, rows * int(np.prod(w)), w, y)
    return layers


def macs_per_image(onnx_path, input_name: str, chw: tuple[int, int, int]) -> float:
    """Multiply-adds (GMAC) of one image through a float ONNX model: every Conv, Gemm and MatMul."""
    return sum(layer.macs for layer in layer_macs(onnx_path, input_name, chw).values()) / 1e9
