"""Which backend a stage uses: the Ascend tool when it is there, else the CPU fallback.

``POC_BACKEND=ascend|cpu`` forces one; a forced ``ascend`` with the tool missing is an error naming the tool.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess

from .errors import InputError, ToolError

BACKEND_ENV = "POC_BACKEND"
__all__ = ["BACKEND_ENV", "ToolError", "choose", "forced_backend", "on_path", "run_tool"]


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
