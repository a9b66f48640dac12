"""Stage 6: the CPU runner (ais_bench's command line and output layout, on ONNX Runtime)."""
from __future__ import annotations

import re


def natural_key(path) -> list:
    """ais_bench's file order: img2 before img10."""
    name = getattr(path, "name", str(path))
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
