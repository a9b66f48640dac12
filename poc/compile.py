"""Stage 5: compile the model for batch 24 with AIPP: ``atc`` -> ``{output}.om``, or on the CPU
``{output}.onnx``: the batch fixed, the AIPP stage folded in front (input uint8 NHWC [24,32,32,3], exactly like
the OM's), optimised offline by ONNX Runtime and saved.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import onnx
import onnxruntime as ort

from . import ascend
from .aipp import fold_into_model, parse_aipp
from .backends import OnnxRuntimeBackend, load_onnx
from .config import AIPP_CFG, COMPILED_INT8, CPU_QUANTIZER_KEY, DEPLOY_SUFFIX, INPUT_SHAPE, QUANT_SAVE_PATH
from .errors import InputError, OutputSet, run_main
from .progress import Log

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def is_cpu_qdq_model(path) -> bool:
    model = load_onnx(path, load_external_data=False)
    return (any(p.key == CPU_QUANTIZER_KEY for p in model.metadata_props)
            or any(n.op_type in QDQ_OPS for n in model.graph.node))


def compile_ascend(args, log: Log) -> Path:
    if is_cpu_qdq_model(args.model):
        raise InputError(args.model, "is a QDQ model from the CPU quantizer: atc cannot compile it; quantize "
                                     "with amct_onnx (quantize.sh on a machine with AMCT), or compile the FP32 "
                                     "end2end.onnx")
    if not args.soc_version:
        args.soc_version = ascend.npu_chip_name() or "Ascend310P3"
        log(f"--soc_version not given: {args.soc_version}"
            + (" (from npu-smi info)" if ascend.on_path("npu-smi") else " (default; npu-smi not found)"))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)  # as the CPU path does
    ascend.run_tool(ascend.atc_command(args.framework, args.model, args.output, args.input_format, args.input_shape,
                                       args.insert_op_conf, args.enable_small_channel, args.op_select_implmode,
                                       args.soc_version, args.log), log)
    return Path(f"{args.output}.om")


def compile_cpu(model_path, output, input_shape: str, aipp_conf, input_format: str = "NCHW",
                log: Log | None = None) -> Path:
    """Fold AIPP, fix the batch, optimise with ONNX Runtime (portable EXTENDED level), save ``{output}.onnx``."""
    log = log or Log(stage="compile")
    if input_format != "NCHW":
        raise InputError("--input_format", f"'{input_format}': the model input is NCHW (as in the ModelZoo call)")
    name, shape = ascend.parse_input_shape(input_shape)
    out = Path(f"{output}.onnx")
    outputs = OutputSet({"--output": out}, {"--model": model_path, "--insert_op_conf": aipp_conf or None})
    model = load_onnx(model_path)
    inputs = [i.name for i in model.graph.input]
    if name not in inputs:
        raise InputError(model_path, f"has no input '{name}' (inputs: {', '.join(inputs)})")
    if len(shape) != 4 or shape[1] != 3:
        raise InputError("--input_shape", f"{shape}: expected N,3,H,W")
    aipp = parse_aipp(aipp_conf) if aipp_conf else None
    if aipp is not None and aipp.out_hw != (shape[2], shape[3]):
        raise InputError(aipp_conf, f"AIPP output {aipp.out_hw[0]}x{aipp.out_hw[1]} does not match "
                                    f"--input_shape {shape[2]}x{shape[3]}")
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
    log(f"wrote {out}: input {name} " + (f"uint8 NHWC [{shape[0]},{aipp.src_h},{aipp.src_w},3] with AIPP "
                                         f"folded in" if aipp else f"float32 NCHW {shape}")
        + ", optimised by ONNX Runtime")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="atc_convert.sh", description="Stage 5: compile for batch 24 with AIPP. atc when on PATH (or "
        "POC_BACKEND=ascend) -> {output}.om; else the CPU fallback -> {output}.onnx (AIPP folded in, batch fixed, "
        "optimised by ONNX Runtime).")
    p.add_argument("--framework", default="5", help="5 = ONNX (default: %(default)s)")
    p.add_argument("--model", default=f"{QUANT_SAVE_PATH}{DEPLOY_SUFFIX}", help="ONNX model (default: %(default)s)")
    p.add_argument("--output", default=COMPILED_INT8, help="output path without extension (default: %(default)s)")
    p.add_argument("--input_format", default="NCHW", help="(default: %(default)s)")
    p.add_argument("--input_shape", default=INPUT_SHAPE, help="(default: %(default)s)")
    p.add_argument("--insert_op_conf", default=AIPP_CFG, help="AIPP config; '' for none (default: %(default)s)")
    p.add_argument("--enable_small_channel", default="1", help="atc only (default: %(default)s)")
    p.add_argument("--op_select_implmode", default="high_performance", help="atc only (default: %(default)s)")
    p.add_argument("--soc_version", default=None,
                   help="atc only; default: the chip from `npu-smi info`, else Ascend310P3")
    p.add_argument("--log", default="error", help="atc log level (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    args = p.parse_args(argv)
    log = Log(args.quiet, "compile")
    if args.framework != "5":
        raise InputError("--framework", f"'{args.framework}': only 5 (ONNX) is supported")
    ascend.parse_input_shape(args.input_shape)
    backend = ascend.choose("atc", ascend.on_path("atc"), log)
    if backend == "ascend":
        compile_ascend(args, log)
    else:
        ignored = [f"--{k}" for k in ("enable_small_channel", "op_select_implmode", "soc_version", "log")
                   if getattr(args, k) != p.get_default(k)]
        if ignored:
            log(f"CPU fallback: {', '.join(ignored)} apply to atc only and are ignored")
        compile_cpu(args.model, args.output, args.input_shape, args.insert_op_conf or None, args.input_format, log)
    return 0


if __name__ == "__main__":
    run_main(main)
