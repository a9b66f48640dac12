"""Stage 4: INT8 post-training quantization, with AMCT's command line and file names.

``amct_onnx calibration`` when AMCT is installed; otherwise the CPU fallback: ranges (``calibrate``), the QDQ
model (``qdq``), then a fidelity report and, on request, the sensitivity table (``fidelity``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import onnx

from poc import profiles
from poc.config import (
    BIN_DIR,
    CALIB_DIR,
    DEPLOY_SUFFIX,
    END2END_ONNX,
    FAKE_QUANT_SUFFIX,
    LABEL_FILE,
    MODELS_DIR,
    QUANT_CFG,
    REPORT_SUFFIX,
)
from poc.formats.model_file import load_onnx, same_source
from poc.formats.quant_cfg import QuantConfig, describe, parse_quant_cfg
from poc.int8.calibrate import ifmr_ranges, read_calibration_bins
from poc.int8.fidelity import compare, eval_set, predict, sensitivity
from poc.int8.qdq import (
    METHODS,
    QUANT_OP_TYPES,
    QdqSettings,
    check_skip_layers,
    excluded_nodes,
    prepare_float_model,
    write_qdq,
)
from poc.shared import ascend
from poc.shared.bins import read_image_bins
from poc.shared.errors import InputError, OutputSet, atomic_file, run_main
from poc.shared.progress import Log


@dataclass
class Calibrated:
    """A calibrated float model: what quantizing any part of it again needs (the sensitivity table)."""
    prepared: Path  # the float model as quantized (shapes inferred, pre-processed)
    settings: QdqSettings
    ranges: dict | None  # IFMR's ranges; None: ONNX Runtime's calibrator runs on the batches
    batches: list
    input_name: str
    batch_num: int  # as the deploy model's metadata records it
    work: Path

    def quantize_only(self, nodes, out_path: Path) -> Path:
        """The model with only ``nodes`` quantized, with the whole model's ranges."""
        only = QdqSettings(self.settings.activation_offset, self.settings.channel_wise, self.settings.method,
                           self.settings.exclude, tuple(nodes))
        write_qdq(self.prepared, out_path, only, self.work, self.ranges, self.batches, self.input_name,
                  self.batch_num)
        return out_path


def quantize_cpu(model_path, save_path, input_shape: str, data_dir, data_type: str, cfg: QuantConfig, cfg_path,
                 work: Path, method: str = "ifmr", log: Log | None = None) -> Calibrated:
    """Write ``{save_path}_deploy_model.onnx`` and its ``_fake_quant_model.onnx`` twin (both or neither)."""
    log = log or Log(stage="quantize")
    start = time.perf_counter()
    name, shape = ascend.parse_input_shape(input_shape)
    for line in describe(cfg, cfg_path):
        log(line)
    deploy, twin = Path(f"{save_path}{DEPLOY_SUFFIX}"), Path(f"{save_path}{FAKE_QUANT_SUFFIX}")
    with OutputSet({"deploy model": deploy, "fake-quant model": twin},
                   {"--model": model_path, "--data_dir": data_dir, "--calibration_config": cfg_path}) as out:
        check_skip_layers(load_onnx(model_path), cfg, cfg_path)
        batches = read_calibration_bins(data_dir, shape, data_type, cfg.batch_num)
        prepared = prepare_float_model(model_path, work)
        model = onnx.load(str(prepared))
        if model.graph.input[0].name != name:
            raise InputError(model_path, f"has no input '{name}' (input: {model.graph.input[0].name})")
        settings = QdqSettings(cfg.activation_offset, cfg.channel_wise, method,
                               tuple(excluded_nodes(model, cfg, cfg_path, log)))
        ranges = ifmr_ranges(model, batches, QUANT_OP_TYPES, cfg, log) if method == "ifmr" else None
        deploy_tmp = out.file(deploy)
        qmodel = write_qdq(prepared, deploy_tmp, settings, work, ranges, batches, name, cfg.batch_num)
        shutil.copyfile(deploy_tmp, out.file(twin))
    n_q = sum(n.op_type == "QuantizeLinear" for n in qmodel.graph.node)
    log(f"wrote {deploy} ({method}, {cfg.batch_num} batches, {n_q} quantized tensors) in "
        f"{time.perf_counter() - start:.1f} s")
    return Calibrated(prepared, settings, ranges, batches, name, cfg.batch_num, work)


def main(argv=None) -> int:
    default = profiles.get(None)  # the help texts name the default profile's files
    p = argparse.ArgumentParser(
        prog="quantize.sh", description="Stage 4: INT8 calibration. amct_onnx calibration when AMCT is on PATH "
        "(or POC_BACKEND=ascend), else ONNX Runtime static INT8 (QDQ) on the CPU, same output names.")
    profiles.add_argument(p)
    p.add_argument("--model", default=None, help=f"float ONNX model (default: the profile's, {MODELS_DIR}/{END2END_ONNX})")
    p.add_argument("--save_path", default=None,
                   help=f"output prefix: {{save_path}}_deploy_model.onnx ... (default: {default.quant_save_path}, or the "
                        "profile's)")
    p.add_argument("--input_shape", default=None, help=f"NAME:N,C,H,W (default: {default.input_shape}, or the profile's)")
    p.add_argument("--data_dir", default=None, help=f"calibration bins (default: the profile's, {CALIB_DIR}/)")
    p.add_argument("--data_types", default="float32", help="calibration data type (default: %(default)s)")
    p.add_argument("--calibration_config", default=None,
                   help=f"AMCT config (default: ./{QUANT_CFG}; for another profile its own {QUANT_CFG})")
    p.add_argument("--method", choices=METHODS, default="ifmr",
                   help="CPU calibration: ifmr (AMCT's, default), or ONNX Runtime's minmax/percentile/entropy")
    p.add_argument("--eval_bins", default=None, help=f"test images for the fidelity report (default: the profile's, "
                                                     f"{BIN_DIR})")
    p.add_argument("--eval_labels", default=None, help=f"their labels, if any (default: the profile's, {LABEL_FILE})")
    p.add_argument("--eval_images", type=int, default=480, help="images in the fidelity report (default: 480)")
    p.add_argument("--sensitivity", action="store_true", help="per-layer-group sensitivity table (CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress or log lines")
    args = p.parse_args(argv)
    if args.eval_images < 0:
        p.error("--eval_images must be >= 0")
    profile = profiles.get(args.profile)
    args.save_path = args.save_path or profile.quant_save_path
    args.model = args.model or profile.path(f"{MODELS_DIR}/{END2END_ONNX}")
    args.data_dir = args.data_dir or profile.path(CALIB_DIR) + "/"
    args.eval_bins = args.eval_bins or profile.path(BIN_DIR)
    args.eval_labels = args.eval_labels or profile.path(LABEL_FILE)
    args.input_shape = args.input_shape or profile.input_shape
    log = Log(args.quiet, "quantize")
    if args.calibration_config is None:
        path, whose = profile.config_file(QUANT_CFG)
        args.calibration_config = path
        log(f"calibration config: {whose}, {path}")
    backend = ascend.choose("amct_onnx", ascend.on_path("amct_onnx"), log)
    report: dict = {"backend": backend, "model": str(args.model), "calibration_config": str(args.calibration_config)}
    with tempfile.TemporaryDirectory(prefix="poc-quant-") as tmp:
        work = Path(tmp)
        if backend == "ascend":
            # AMCT reads its own config (it knows fields the CPU fallback does not).
            Path(args.save_path).parent.mkdir(parents=True, exist_ok=True)
            ascend.run_tool(ascend.amct_command(args.model, args.save_path, args.input_shape, args.data_dir,
                                                args.data_types, args.calibration_config), log)
            int8_model = Path(f"{args.save_path}{FAKE_QUANT_SUFFIX}")  # AMCT's twin that runs on ONNX Runtime
        else:
            cfg = parse_quant_cfg(args.calibration_config)
            calibrated = quantize_cpu(
                args.model, args.save_path, args.input_shape, args.data_dir, args.data_types, cfg,
                args.calibration_config, work, args.method, log)
            int8_model = Path(f"{args.save_path}{DEPLOY_SUFFIX}")
            report.update(method=args.method, batch_num=cfg.batch_num)
        images, labels = read_image_bins(args.eval_bins, args.eval_labels, args.eval_images, profile.image_hw) \
            if Path(args.eval_bins).is_dir() else ([], None)
        if len(images) and int8_model.is_file():
            same_source({"--model": args.model, "the INT8 model": int8_model})
            ev = eval_set(args.model, images, labels, profile.mean_rgb_255, profile.std_rgb_255)
            fid = compare(ev.fp32, predict(int8_model, ev.x), ev.labels)
            log(fid.line())
            report["fidelity"] = fid.as_dict()
            if args.sensitivity and backend == "cpu":
                # the model module's facts, imported here only: it loads torch, which quantizing does not need
                conv_groups = importlib.import_module(profile.model_module).CONV_GROUPS
                report["sensitivity"] = sensitivity(onnx.load(str(calibrated.prepared)), conv_groups, int8_model,
                                                    calibrated.quantize_only, ev, work, log)
        else:
            log(f"fidelity report skipped: no test images in {args.eval_bins}" if not len(images)
                else f"fidelity report skipped: {int8_model} not found")
    report_path = Path(f"{args.save_path}{REPORT_SUFFIX}")
    with atomic_file(report_path, "w") as f:
        json.dump(report, f, indent=2)
    log(f"wrote {report_path}")
    return 0


if __name__ == "__main__":
    run_main(main)
