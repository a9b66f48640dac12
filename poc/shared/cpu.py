"""What the CPU is, as /proc/cpuinfo says."""
from __future__ import annotations

from pathlib import Path


def cpuinfo(field: str) -> str:
    """The first ``field`` line of /proc/cpuinfo (``model name``, ``flags``), '' where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == field:
                return value.strip()
    except OSError:
        pass
    return ""


def amx_int8() -> bool:
    """The CPU has AMX-INT8 matrix units (the ``amx_int8`` flag of /proc/cpuinfo; False where there is none)."""
    return "amx_int8" in cpuinfo("flags").split()


