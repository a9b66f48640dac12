"""Progress bars and log lines that ``--quiet`` silences."""
from __future__ import annotations

import sys

from tqdm import tqdm


class Log:
    def __init__(self, quiet: bool = False, stage: str = "poc"):
        self.quiet = quiet
        self.stage = stage

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{self.stage}] {message}", flush=True)

    def bar(self, iterable=None, total=None, desc: str = "", unit: str = "img"):
        # disable=None: tqdm draws only on a terminal, so logs and CI output stay free of carriage returns.
        return tqdm(iterable, total=total, desc=f"[{self.stage}] {desc}", unit=unit, disable=True if self.quiet else None,
                    file=sys.stderr, dynamic_ncols=True, leave=False, mininterval=0.5)


def versus(int8_top1: float, fp32_top1: float) -> str:
    """The INT8 model's top-1 against FP32's, with the direction in words: '94.75 % vs 95.00 %: 0.25 points lower'."""
    diff = int8_top1 - fp32_top1
    how = "the same" if abs(diff) < 0.005 else f"{abs(diff):.2f} points {'lower' if diff < 0 else 'higher'}"
    return f"{int8_top1:.2f} % vs {fp32_top1:.2f} %: {how}"
