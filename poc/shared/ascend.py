"""The Ascend tools: which backend a stage uses, and the hand-offs to ``amct_onnx``, ``atc``, ``npu-smi`` and
``python3 -m ais_bench`` with the ModelZoo's command lines.

A stage uses the Ascend tool when it is there and the CPU fallback otherwise; ``POC_BACKEND=ascend|cpu`` forces
one, and a forced ``ascend`` with the tool missing is an error naming the tool. This module imports neither
ONNX Runtime nor torch: an Ascend host may have neither.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

from poc.shared.errors import InputError, ToolError

BACKEND_ENV = "POC_BACKEND"


def forced_backend() -> str | None:
    value = os.environ.get(BACKEND_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in ("ascend", "cpu"):
        raise InputError(BACKEND_ENV, f"'{value}' is not one of ascend, cpu, auto")
    return value


def choose(tool: str, available: bool, log) -> str:
    """'ascend' or 'cpu' for a stage whose Ascend implementation is ``tool``."""
    forced = forced_backend()
    if forced == "ascend" and not available:
        raise ToolError(f"{BACKEND_ENV}=ascend but {tool} is not installed (not on PATH / not importable)")
    backend = forced or ("ascend" if available else "cpu")
    why = f"forced by {BACKEND_ENV}" if forced else (f"{tool} found" if available else f"{tool} not found")
    log(f"backend: {backend} ({why})")
    return backend


def on_path(tool: str) -> bool:
    return shutil.which(tool) is not None


def run_tool(cmd: list[str], log) -> None:
    """Run an Ascend tool, its output passing straight through; a non-zero exit is a ToolError."""
    log("running: " + " ".join(shlex.quote(c) for c in cmd))
    code = subprocess.call(cmd)
    if code != 0:
        raise ToolError(f"{cmd[0]} exited with code {code}")


def parse_input_shape(text: str) -> tuple[str, list[int]]:
    """ATC/AMCT ``--input_shape "input:24,3,32,32"`` -> ("input", [24, 3, 32, 32])."""
    m = re.fullmatch(r"\s*([^:;]+):\s*([0-9]+(?:\s*,\s*[0-9]+)*)\s*", text or "")
    if not m:
        raise InputError("--input_shape", f"'{text}' is not NAME:d0,d1,... (e.g. input:24,3,32,32)")
    dims = [int(d) for d in m.group(2).split(",")]
    if not all(0 < d <= 65536 for d in dims):
        raise InputError("--input_shape", f"'{text}': every dimension must be between 1 and 65536")
    return m.group(1), dims


# --- amct_onnx ---------------------------------------------------------------------------------------------

def amct_command(model, save_path, input_shape, data_dir, data_types, calibration_config) -> list[str]:
    """The ModelZoo's AMCT call, with the given values."""
    return ["amct_onnx", "calibration", "--model", str(model), "--save_path", str(save_path),
            "--input_shape", input_shape, "--data_dir", str(data_dir), "--data_types", data_types,
            "--calibration_config", str(calibration_config)]


# --- atc and npu-smi ---------------------------------------------------------------------------------------

def npu_chip_name() -> str | None:
    """'Ascend310P3' from ``npu-smi info`` (its Name column), or None when npu-smi is absent or says nothing."""
    if not on_path("npu-smi"):
        return None
    try:
        out = subprocess.run(["npu-smi", "info"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^\|\s*\d+\s+(\d{3}[A-Za-z]?\w*)\s+\|", out, re.MULTILINE)
    return f"Ascend{m.group(1)}" if m else None


def atc_command(*, framework, model, output, input_format, input_shape, insert_op_conf, enable_small_channel,
                op_select_implmode, soc_version, log, precision_mode=None) -> list[str]:
    """The ATC call of the ModelZoo README, with the given values (and --precision_mode when one is given)."""
    cmd = ["atc", f"--framework={framework}", f"--model={model}", f"--output={output}",
           f"--input_format={input_format}", f"--input_shape={input_shape}"]
    if insert_op_conf:
        cmd.append(f"--insert_op_conf={insert_op_conf}")
    cmd += [f"--enable_small_channel={enable_small_channel}", f"--op_select_implmode={op_select_implmode}",
            f"--soc_version={soc_version}", f"--log={log}"]
    if precision_mode is not None:
        cmd.append(f"--precision_mode={precision_mode}")
    return cmd


# --- ais_bench ---------------------------------------------------------------------------------------------

def run_ais_bench(model, ais_args: list[str], log) -> int:
    """``python3 -m ais_bench ...`` with an interpreter that can import it: this one, else python3 on PATH."""
    for py in (sys.executable, "python3"):
        try:
            found = subprocess.run([py, "-c", "import ais_bench"], capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            found = False
        if found:
            cmd = [py, "-m", "ais_bench", *ais_args]
            log("backend: ascend (ais_bench), running: " + " ".join(shlex.quote(c) for c in cmd))
            return subprocess.call(cmd)
    raise ToolError(f"{model}: an .om model runs on ais_bench, which is not installed (pip install the ais_bench "
                    "wheel from the Ascend tools repository); an .onnx model runs on the CPU")
