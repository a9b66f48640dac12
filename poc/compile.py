"""Stage 5: compile the model for batch 24 with AIPP: ``atc`` -> ``{output}.om``, or on the CPU
``{output}.onnx``: the batch fixed, the AIPP stage folded in front (input uint8 NHWC [24,32,32,3], exactly like
the OM's), optimised offline by ONNX Runtime and saved.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import onnx
import onnxruntime as ort

from . import tools
from .aipp import fold_into_model, parse_aipp
from .errors import InputError, atomic_path
from .progress import Log

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
CPU_QUANTIZER_KEY = "poc_quantizer"  # metadata the CPU quantizer writes into its QDQ models


def parse_input_shape(text: str) -> tuple[str, list[int]]:
    """ATC/AMCT ``--input_shape "input:24,3,32,32"`` -> ("input", [24, 3, 32, 32])."""
    m = re.fullmatch(r"\s*([^:;]+):\s*(\d+(?:\s*,\s*\d+)*)\s*", text or "")
    if not m:
        raise InputError("--input_shape", f"'{text}' is not NAME:d0,d1,... (e.g. input:24,3,32,32)")
    return m.group(1), [int(d) for d in m.group(2).split(",")]


def npu_chip_name() -> str | None:
    """'Ascend310P3' from ``npu-smi info`` (its Name column), or None when npu-smi is absent or says nothing."""
    if not tools.on_path("npu-smi"):
        return None
    try:
        out = subprocess.run(["npu-smi", "info"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^\|\s*\d+\s+(\d{3}[A-Za-z]?\w*)\s+\|", out, re.MULTILINE)
    return f"Ascend{m.group(1)}" if m else None


def is_cpu_qdq_model(path) -> bool:
    model = onnx.load(str(path), load_external_data=False)
    return (any(p.key == CPU_QUANTIZER_KEY for p in model.metadata_props)
            or any(n.op_type in QDQ_OPS for n in model.graph.node))


def atc_command(args) -> list[str]:
    """The ATC call of the ModelZoo README, with the given values."""
    cmd = ["atc", f"--framework={args.framework}", f"--model={args.model}", f"--output={args.output}",
           f"--input_format={args.input_format}", f"--input_shape={args.input_shape}"]
    if args.insert_op_conf:
        cmd.append(f"--insert_op_conf={args.insert_op_conf}")
    cmd += [f"--enable_small_channel={args.enable_small_channel}",
            f"--op_select_implmode={args.op_select_implmode}", f"--soc_version={args.soc_version}",
            f"--log={args.log}"]
    return cmd


def compile_ascend(args, log: Log) -> Path:
    if is_cpu_qdq_model(args.model):
        raise InputError(args.model, "is a QDQ model from the CPU quantizer: atc cannot compile it; quantize "
                                     "with amct_onnx (quantize.sh on a machine with AMCT), or compile the FP32 "
                                     "end2end.onnx")
    if not args.soc_version:
        args.soc_version = npu_chip_name() or "Ascend310P3"
        log(f"--soc_version not given: {args.soc_version}"
            + (" (from npu-smi info)" if tools.on_path("npu-smi") else " (default; npu-smi not found)"))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)  # as the CPU path does
    tools.run_tool(atc_command(args), log)
    return Path(f"{args.output}.om")


def compile_cpu(model_path, output, input_shape: str, aipp_conf, input_format: str = "NCHW",
                log: Log | None = None) -> Path:
    """Fold AIPP, fix the batch, optimise with ONNX Runtime (portable EXTENDED level), save ``{output}.onnx``."""
    log = log or Log(stage="compile")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise InputError(model_path, "no such model file")
    if input_format != "NCHW":
        raise InputError("--input_format", f"'{input_format}': the model input is NCHW (as in the ModelZoo call)")
    name, shape = parse_input_shape(input_shape)
    try:
        model = onnx.load(str(model_path))
    except Exception as err:  # noqa: BLE001 - any parse failure is one line about this file
        raise InputError(model_path, f"not an ONNX model ({type(err).__name__})") from None
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
    out = Path(f"{output}.onnx")
    with atomic_path(out) as tmp:
        raw = tmp.with_suffix(".raw.onnx")
        onnx.save(model, str(raw))
        try:
            opts = ort.SessionOptions()
            # EXTENDED folds QDQ pairs into QLinear kernels and fuses Conv+Relu; ALL would add NCHWc layout
            # changes that tie the file to this CPU, so those are left to the session that runs it.
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            opts.optimized_model_filepath = str(tmp)
            ort.InferenceSession(str(raw), opts, providers=["CPUExecutionProvider"])
        finally:
            raw.unlink(missing_ok=True)
    log(f"wrote {out}: input {name} " + (f"uint8 NHWC [{shape[0]},{aipp.src_h},{aipp.src_w},3] with AIPP "
                                         f"folded in" if aipp else f"float32 NCHW {shape}")
        + ", optimised by ONNX Runtime")
    return out


def main(argv=None) -> int:
    import argparse

    from .config import AIPP_CFG, COMPILED_INT8, DEPLOY_SUFFIX, INPUT_SHAPE, QUANT_SAVE_PATH

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
    parse_input_shape(args.input_shape)
    backend = tools.choose("atc", tools.on_path("atc"), log)
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
    from .errors import run_main
    run_main(main)
