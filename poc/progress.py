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
