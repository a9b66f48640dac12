"""Stage 5: compile the model for batch 24 with AIPP: ``atc`` -> ``{output}.om``, or on the CPU one of two engines,
both taking exactly the OM's input (uint8 NHWC [24,32,32,3]):

- ONNX Runtime (the reference, default) -> ``{output}.onnx``: the batch fixed, the AIPP stage folded in front as
  ONNX ops, optimised offline by ONNX Runtime;
- OpenVINO (``--engine openvino`` or ``POC_ENGINE=openvino``) -> ``{output}.xml`` + ``.bin``: an IR with the batch
  fixed and the AIPP stage as OpenVINO's pre-processing; ATC's ``--precision_mode`` picks its inference precision.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from poc import profiles
from poc.config import (
    AIPP_CFG,
    CPU_QUANTIZER_KEY,
)
from poc.engines.openvino import native_bf16
from poc.engines.pick import ENGINES, compiled_path
from poc.formats.aipp import parse_aipp
from poc.formats.model_file import has_qdq, load_onnx
from poc.shared import ascend
from poc.shared.errors import InputError, OutputSet, run_main
from poc.shared.progress import Log

ENGINE_ENV = "POC_ENGINE"
# ATC's --precision_mode values and what they mean on the CPU engines: the NPU computes a float model in FP16
# unless told otherwise; the CPU's counterpart of FP16 is BF16 (where the CPU has it natively).
LOW_PRECISION_MODES = ("force_fp16", "allow_fp32_to_fp16", "allow_mix_precision", "allow_mix_precision_fp16",
                       "allow_mix_precision_bf16", "force_lowerprecision")
FP32_MODES = ("must_keep_origin_dtype", "force_fp32", "cube_fp16in_fp32out")


def choose_engine(requested: str | None, log) -> str:
    engine = (requested or os.environ.get(ENGINE_ENV, "") or "onnxruntime").strip().lower()
    if engine not in ENGINES:
        raise InputError("--engine" if requested else ENGINE_ENV, f"'{engine}' is not one of {', '.join(ENGINES)}")
    log(f"CPU engine: {engine}" + (f" (from {ENGINE_ENV})" if not requested and os.environ.get(ENGINE_ENV) else ""))
    return engine


def inference_precision(engine: str, precision_mode: str | None, log) -> str:
    """'f32' or 'bf16' for ATC's --precision_mode on a CPU engine."""
    if precision_mode is not None and precision_mode not in LOW_PRECISION_MODES + FP32_MODES:
        raise InputError("--precision_mode", f"'{precision_mode}' is not an ATC precision mode "
                                             f"({', '.join(LOW_PRECISION_MODES + FP32_MODES)})")
    if engine == "onnxruntime":
        if precision_mode is not None:
            log(f"--precision_mode {precision_mode}: ONNX Runtime computes in FP32 (use --engine openvino for BF16)")
        return "f32"
    if precision_mode is None or precision_mode in FP32_MODES:
        log("inference precision FP32" + (f" (--precision_mode {precision_mode})" if precision_mode else
                                          " (no --precision_mode; atc's own default on the NPU is force_fp16)"))
        return "f32"
    if not native_bf16():
        log(f"--precision_mode {precision_mode}: this CPU has no native BF16 (AVX512-BF16 or AMX): FP32 instead")
        return "f32"
    log(f"inference precision BF16 (--precision_mode {precision_mode}: the CPU's counterpart of the NPU's FP16)")
    return "bf16"


def is_cpu_qdq_model(path) -> bool:
    model = load_onnx(path, load_external_data=False)
    return any(p.key == CPU_QUANTIZER_KEY for p in model.metadata_props) or has_qdq(model)


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
    flags = ("framework", "model", "output", "input_format", "input_shape", "insert_op_conf", "enable_small_channel",
             "op_select_implmode", "soc_version", "log", "precision_mode")  # ATC's own flags, by their names
    ascend.run_tool(ascend.atc_command(**{f: getattr(args, f) for f in flags}), log)
    return Path(f"{args.output}.om")


def compile_cpu(model_path, output, input_shape: str, aipp_conf, input_format: str = "NCHW",
                log: Log | None = None, engine: str = "onnxruntime", precision_mode: str | None = None) -> Path:
    """The model with its batch fixed and AIPP in front, for ``engine``: ``{output}.onnx`` (ONNX Runtime) or
    ``{output}.xml`` + ``.bin`` (OpenVINO)."""
    log = log or Log(stage="compile")
    if input_format != "NCHW":
        raise InputError("--input_format", f"'{input_format}': the model input is NCHW (as in the ModelZoo call)")
    name, shape = ascend.parse_input_shape(input_shape)
    out = compiled_path(output, engine)
    written = {"--output": out, "--output (weights)": out.with_suffix(".bin") if engine == "openvino" else None}
    outputs = OutputSet(written, {"--model": model_path, "--insert_op_conf": aipp_conf or None})
    precision = inference_precision(engine, precision_mode, log)
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
    return ENGINES[engine].compile_model(model, aipp, shape, name, precision, out, outputs, log)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="atc_convert.sh", description="Stage 5: compile for batch 24 with AIPP. atc when on PATH (or "
        "POC_BACKEND=ascend) -> {output}.om; else the CPU fallback -> {output}.onnx (AIPP folded in, batch fixed, "
        "optimised by ONNX Runtime).")
    p.add_argument("--framework", default="5", help="5 = ONNX (default: %(default)s)")
    profiles.add_argument(p)
    p.add_argument("--model", default=None,
                   help=f"ONNX model (default: {profiles.get(None).deploy_model}, or the profile's)")
    p.add_argument("--output", default=None,
                   help=f"output path without extension (default: {profiles.get(None).compiled('int8')}, or the profile's)")
    p.add_argument("--input_format", default="NCHW", help="(default: %(default)s)")
    p.add_argument("--input_shape", default=None, help=f"(default: {profiles.get(None).input_shape}, or the profile's)")
    p.add_argument("--insert_op_conf", default=None,
                   help=f"AIPP config; '' for none (default: the profile's; ./{AIPP_CFG}, else the one that ships with "
                        "the scripts)")
    p.add_argument("--enable_small_channel", default="1", help="atc only (default: %(default)s)")
    p.add_argument("--op_select_implmode", default="high_performance", help="atc only (default: %(default)s)")
    p.add_argument("--soc_version", default=None,
                   help="atc only; default: the chip from `npu-smi info`, else Ascend310P3")
    p.add_argument("--log", default="error", help="atc log level (default: %(default)s)")
    p.add_argument("--precision_mode", default=None,
                   help="ATC's precision mode, passed to atc as given; on the OpenVINO engine force_fp16 / "
                        "allow_fp32_to_fp16 / allow_mix_precision mean BF16 where the CPU has it, force_fp32 / "
                        "must_keep_origin_dtype FP32 (default: not passed; FP32 on the CPU)")
    p.add_argument("--engine", choices=list(ENGINES), default=None,
                   help=f"CPU fallback engine (default: ${ENGINE_ENV}, else onnxruntime)")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    args = p.parse_args(argv)
    log = Log(args.quiet, "compile")
    profile = profiles.get(args.profile)
    args.model = args.model or profile.deploy_model
    args.output = args.output or profile.compiled("int8")
    args.input_shape = args.input_shape or profile.input_shape
    if args.framework != "5":
        raise InputError("--framework", f"'{args.framework}': only 5 (ONNX) is supported")
    ascend.parse_input_shape(args.input_shape)
    if args.insert_op_conf is None:
        path, whose = profile.config_file(AIPP_CFG)
        args.insert_op_conf = path
        log(f"AIPP config: {whose}, {path}")
    backend = ascend.choose("atc", ascend.on_path("atc"), log)
    if backend == "ascend":
        compile_ascend(args, log)
    else:
        ignored = [f"--{k}" for k in ("enable_small_channel", "op_select_implmode", "soc_version", "log")
                   if getattr(args, k) != p.get_default(k)]
        if ignored:
            log(f"CPU fallback: {', '.join(ignored)} apply to atc only and are ignored")
        compile_cpu(args.model, args.output, args.input_shape, args.insert_op_conf or None, args.input_format, log,
                    choose_engine(args.engine, log), args.precision_mode)
    return 0


if __name__ == "__main__":
    run_main(main)
