"""PyTorch to ONNX with the TorchScript exporter, as the export stage and the demo weights use it."""
from __future__ import annotations

import warnings

import torch

from poc.config import IMAGE_CHANNELS, INPUT_NAME


def torchscript_export(module: torch.nn.Module, f, opset: int, output_name: str, dynamic_axes: dict,
                       hw: int) -> None:
    """The TorchScript exporter (``dynamo=False``): it, not the dynamo one, reproduces mmdeploy's opset-11 graph."""
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice: chosen on purpose
        torch.onnx.export(module, torch.zeros(1, IMAGE_CHANNELS, hw, hw), f, dynamo=False, opset_version=opset,
                          export_params=True, do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL,
                          keep_initializers_as_inputs=False, input_names=[INPUT_NAME], output_names=[output_name],
                          dynamic_axes=dynamic_axes)
