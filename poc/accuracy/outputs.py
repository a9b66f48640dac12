"""Two inference output folders compared image by image (ais_bench's names, TXT / NPY / BIN in any mix): the NPU's
``dst/`` against the CPU's, INT8 against FP32. Top-1 agreement, cosine and the largest absolute difference per
image, and with labels which side gets an image right that the other gets wrong."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poc.shared.aisbench import find_outputs, read_output_vector
from poc.shared.bins import natural_key, read_labels
from poc.shared.errors import InputError

CSV_HEADER = ("Image", "GoldenTop1", "TargetTop1", "Agree", "CosineSimilarity", "MaxAbsoluteError", "Label",
              "GoldenCorrect", "TargetCorrect", "Note")


@dataclass
class ImageRow:
    image: str
    golden_top1: int
    target_top1: int
    cosine: float  # NaN where an output holds NaN or Inf
    max_abs: float
    label: int | None = None
    note: str = ""

    @property
    def agree(self) -> bool:
        return self.golden_top1 == self.target_top1

    def csv(self) -> list[str]:
        known = self.label is not None
        return [self.image, str(self.golden_top1), str(self.target_top1), "YES" if self.agree else "NO",
                f"{self.cosine:.6f}" if np.isfinite(self.cosine) else "NaN",
                f"{self.max_abs:.6f}" if np.isfinite(self.max_abs) else "NaN",
                str(self.label) if known else "", ("YES" if self.golden_top1 == self.label else "NO") if known else "",
                ("YES" if self.target_top1 == self.label else "NO") if known else "", self.note]


def _missing(names: set[str], where: Path) -> str:
    first = sorted(names, key=natural_key)[:3]
    return f"{len(names)} images have no output in {where} (e.g. {', '.join(first)})"


def compare_outputs(golden_dir, target_dir, label_path=None) -> list[ImageRow]:
    """One row per image, in natural order; the two folders must hold outputs for the same images."""
    golden, target = find_outputs(golden_dir), find_outputs(target_dir)
    if not golden:
        raise InputError(golden_dir, "holds no inference outputs ({stem}_0.txt|npy|bin)")
    if set(golden) != set(target):
        if set(golden) - set(target):
            raise InputError(target_dir, _missing(set(golden) - set(target), Path(target_dir)) + f" that {golden_dir} has")
        raise InputError(golden_dir, _missing(set(target) - set(golden), Path(golden_dir)) + f" that {target_dir} has")
    labels = read_labels(label_path) if label_path else {}
    rows = []
    for stem in sorted(golden, key=natural_key):
        g, t = read_output_vector(golden[stem]), read_output_vector(target[stem])
        if g.size != t.size:
            raise InputError(target[stem], f"{t.size} values against {g.size} in {golden[stem]}")
        note = ""
        if not (np.isfinite(g).all() and np.isfinite(t).all()):
            note = "NaN or Inf in " + ("both" if not np.isfinite(g).all() and not np.isfinite(t).all()
                                       else "the golden output" if not np.isfinite(g).all() else "the target output")
            cosine = max_abs = float("nan")
        else:
            norm = np.linalg.norm(g) * np.linalg.norm(t)
            cosine = float((g * t).sum() / norm) if norm > 0 else (1.0 if not g.any() and not t.any() else 0.0)
            max_abs = float(np.abs(g - t).max())
        rows.append(ImageRow(stem, int(np.nanargmax(g)) if np.isfinite(g).any() else -1,
                             int(np.nanargmax(t)) if np.isfinite(t).any() else -1, cosine, max_abs,
                             labels.get(stem), note))
    return rows
