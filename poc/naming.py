"""File order shared by the runner, the scoring and the fidelity report: ais_bench's natural order."""
from __future__ import annotations

import re


def natural_key(path) -> list:
    """Sort key for a path or a name: img2 before img10."""
    name = getattr(path, "name", str(path))
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
