"""Convolutions on small maps with the batch laid along the width, for OpenVINO's float kernels.

OpenVINO's CPU convolution kernels block their output rows over a map's width; on the 4x4 maps of a 32x32 ResNet's
last stage a row block is a quarter full, and those 3x3 layers ran well below the others' rate (docs/PERFORMANCE.md,
"What limits each engine"). Laid side by side along the width, with zero columns between them, the images of a batch
make one wide map: the same products, so the same outputs to float rounding, in rows the kernel fills (the whole
network's gain per precision: docs/PERFORMANCE.md). For float models only: layout operations between a
DequantizeLinear and its convolution would stand in the way of OpenVINO's INT8 fusion (and INT8 measured slower).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

# The widest output map whose 3x3 convolutions are rewritten (measured: 4x4 maps gain; 1x1 convolutions, whose
# kernel already takes batch and map together, do not).
MAX_OUT_WIDTH = 4


def lay_batch_along_width(model: onnx.ModelProto, max_out_width: int = MAX_OUT_WIDTH) -> tuple[onnx.ModelProto, int]:
    """Every plain 3x3 convolution (pads 1, no groups or dilation) of a float model whose output maps are at most
    ``max_out_width`` wide, rewritten as: pad each image's right edge with zero columns, lay the batch side by side
    along the width, convolve the one wide map, cut it back into images. The layout constants do not name the batch,
    so the model can still be reshaped to another batch. The model needs its input shape fixed (shape inference
    finds the maps); returns it rewritten in place and how many convolutions changed."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 11:  # Pad takes its pads as an input from opset 11
        return model, 0
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a graph ONNX cannot size is compiled as it is
        return model, 0
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else 0 for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    nodes, changed = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        x_shape = shapes.get(node.input[0], []) if node.op_type == "Conv" else []
        y_shape = shapes.get(node.output[0], []) if node.op_type == "Conv" else []
        if not (len(x_shape) == len(y_shape) == 4 and all(x_shape) and all(y_shape) and y_shape[3] <= max_out_width
                and list(attrs.get("kernel_shape", [])) == [3, 3] and list(attrs.get("pads", [])) == [1, 1, 1, 1]
                and attrs.get("group", 1) == 1 and list(attrs.get("dilations", [1, 1])) == [1, 1]
                and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")):
            nodes.append(node)
            continue
        nodes += _wide_conv(model, node, x_shape, y_shape, list(attrs.get("strides", [1, 1]))[1])
        changed += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.value_info[:]  # the rewritten tensors' shapes are re-inferred by whoever loads the model
    return model, changed


def _wide_conv(model: onnx.ModelProto, conv: onnx.NodeProto, x_shape, y_shape, stride: int) -> list:
    """``conv`` on [N, C, H, W] as the same convolution on [1, C, H, N x (W + gap)]: each image followed by ``gap``
    zero columns (one at least, as the convolution's own padding; more so that every image starts on a multiple of the
    stride, so its outputs land on whole columns of the wide output)."""
    _, channels, height, width = x_shape
    _, kernels, out_h, out_w = y_shape
    gap = next(g for g in range(1, stride + 2) if (width + g) % stride == 0)
    p = f"{conv.output[0]}/wide"

    def const(name, values):
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(values, np.int64), f"{p}/{name}"))
        return f"{p}/{name}"

    wide = onnx.NodeProto()
    wide.CopyFrom(conv)
    wide.input[0], wide.output[0] = f"{p}/x", f"{p}/y"
    return [
        helper.make_node("Pad", [conv.input[0], const("gap", [0, 0, 0, 0, 0, 0, 0, gap])], [f"{p}/padded"]),
        helper.make_node("Transpose", [f"{p}/padded"], [f"{p}/chnw"], perm=[1, 2, 0, 3]),  # C, H, N, W + gap
        helper.make_node("Reshape", [f"{p}/chnw", const("in_shape", [1, channels, height, -1])], [f"{p}/x"]),
        wide,
        helper.make_node("Reshape", [f"{p}/y", const("out_shape", [kernels, out_h, -1, (width + gap) // stride])],
                         [f"{p}/khnw"]),
        helper.make_node("Slice", [f"{p}/khnw", const("start", [0]), const("end", [out_w]), const("axis", [3])],
                         [f"{p}/cut"]),
        helper.make_node("Transpose", [f"{p}/cut"], [conv.output[0]], perm=[2, 0, 1, 3]),  # N, K, H, W
    ]
