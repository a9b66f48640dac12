"""Stage 2: calibration batches for AMCT (and the CPU quantizer): float32 NCHW [24,3,32,32] per file.

Each file holds 24 *distinct* images, normalised in RGB order. (The ModelZoo original repeats one image 24
times and reads it in BGR order against RGB constants; both are bugs and are not reproduced.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from poc.config import BATCH_SIZE, CALIB_OWNED
from poc.formats import data_sets
from poc.formats.image_split import ImageSplit
from poc.shared.bins import normalise, spread_sample
from poc.shared.errors import InputError, OutputSet
from poc.shared.progress import Log


def calibration_split(kind: str, src_path, calib_split: str, eval_split: str) -> tuple[Path, bool]:
    """The split to sample: ``src_path`` itself when it is a split's file, else (a data folder) its training split
    when it exists (calibrating on test images would leak into the accuracy), else its test split. Returns the
    split's file and whether it was chosen here (a folder was given)."""
    if not Path(src_path).is_dir():
        return Path(src_path), False
    train = data_sets.split_path(kind, src_path, calib_split)
    return (train if train.exists() else data_sets.split_path(kind, src_path, eval_split)), True


def create_quant_data(split: ImageSplit, save_path, batch_size: int = BATCH_SIZE, batch_num: int = 8, seed: int = 0,
                      log: Log | None = None, mean=(), std=()) -> list[Path]:
    """``batch_num`` files ``calib_{k:04d}.bin`` (names sort in batch order, as AMCT reads them), each ``batch_size``
    distinct images of ``split`` spread over the classes, normalised with ``mean`` / ``std``."""
    log = log or Log(stage="calib-data")
    outputs = OutputSet({"--save_path": save_path}, {"--src_path": split.data_path})
    need = batch_size * batch_num
    if need > len(split):
        raise InputError(split.source, f"{len(split)} images, but {batch_num} batches of {batch_size} distinct "
                                       f"images need {need}")
    chosen = spread_sample(split.labels, need, seed)
    log(f"{split.source}: {batch_num} batches x {batch_size} distinct images over "
        f"{len(np.unique(split.labels[chosen]))} classes (seed {seed})")
    written = []
    with outputs:
        tmp = outputs.folder(save_path, CALIB_OWNED)
        for k in log.bar(range(batch_num), total=batch_num, desc="batches", unit="batch"):
            batch = normalise(split.chw(chosen[k * batch_size:(k + 1) * batch_size]), mean, std)
            name = f"calib_{k:04d}.bin"
            (tmp / name).write_bytes(np.ascontiguousarray(batch, dtype="<f4").tobytes())
            written.append(Path(save_path) / name)
    log(f"wrote {batch_num} files of float32 [{batch_size},{','.join(map(str, batch.shape[1:]))}] to {save_path}")
    return written
