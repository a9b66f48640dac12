"""Stage 2: calibration batches for AMCT (and the CPU quantizer): float32 NCHW [24,3,32,32] per file.

Each file holds 24 *distinct* images, normalised in RGB order. (The ModelZoo original repeats one image 24
times and reads it in BGR order against RGB constants; both are bugs and are not reproduced.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import cifar
from .config import BATCH_SIZE, MEAN_RGB_255, STD_RGB_255
from .errors import InputError, OutputSet
from .files import normalise, spread_sample
from .progress import Log

CALIB_OWNED = r"calib_[0-9]+\.bin"  # the stage's own files in --save_path


def default_source(cifar_dir, profile=None) -> Path:
    """The training split when it exists (calibrating on test images would leak into the accuracy), else the test
    split (``train`` / ``test`` for CIFAR-100, the profile's for another data set)."""
    calib, evaluation = (profile.calib_split, profile.eval_split) if profile is not None else ("train", "test")
    train = Path(cifar_dir) / calib
    return train if train.exists() else Path(cifar_dir) / evaluation


def create_quant_data(src_path, save_path, batch_size: int = BATCH_SIZE, batch_num: int = 8, seed: int = 0,
                      log: Log | None = None, mean=MEAN_RGB_255, std=STD_RGB_255) -> list[Path]:
    """Write ``batch_num`` files ``calib_{k:04d}.bin``; names sort in batch order, as AMCT reads them."""
    log = log or Log(stage="calib-data")
    outputs = OutputSet({"--save_path": save_path}, {"--src_path": src_path})
    split = cifar.load_split(src_path)
    need = batch_size * batch_num
    if need > len(split):
        raise InputError(src_path, f"{len(split)} images, but {batch_num} batches of {batch_size} distinct images "
                                   f"need {need}")
    chosen = spread_sample(split.labels, need, seed)
    log(f"{src_path}: {batch_num} batches x {batch_size} distinct images over "
        f"{len(np.unique(split.labels[chosen]))} classes (seed {seed})")
    written = []
    with outputs:
        tmp = outputs.folder(save_path, CALIB_OWNED)
        for k in log.bar(range(batch_num), total=batch_num, desc="batches", unit="batch"):
            batch = normalise(split.chw(chosen[k * batch_size:(k + 1) * batch_size]), mean, std)
            name = f"calib_{k:04d}.bin"
            (tmp / name).write_bytes(np.ascontiguousarray(batch, dtype="<f4").tobytes())
            written.append(Path(save_path) / name)
    log(f"wrote {batch_num} files of float32 [{batch_size},3,32,32] to {save_path}")
    return written


def create_quant_data_pets(src_dir, split: str, save_path, batch_size: int = BATCH_SIZE, batch_num: int = 8,
                           seed: int = 0, log: Log | None = None, mean=MEAN_RGB_255, std=STD_RGB_255) -> list[Path]:
    """The same for Oxford-IIIT Pet: images of ``annotations/{split}`` through the eval transform (224x224), float32
    NCHW [batch,3,224,224] per file."""
    from concurrent.futures import ThreadPoolExecutor

    from . import pets
    log = log or Log(stage="calib-data")
    src_dir = Path(src_dir)
    split_file = src_dir / "annotations" / split
    outputs = OutputSet({"--save_path": save_path}, {"--src_path": src_dir})
    entries = pets.read_split(split_file)
    need = batch_size * batch_num
    if need > len(entries):
        raise InputError(split_file, f"{len(entries)} images, but {batch_num} batches of {batch_size} distinct images "
                                     f"need {need}")
    chosen = spread_sample(np.array([label for _, label in entries]), need, seed)
    log(f"{split_file}: {batch_num} batches x {batch_size} distinct images (seed {seed})")
    with outputs, ThreadPoolExecutor(max_workers=2) as pool:
        tmp = outputs.folder(save_path, CALIB_OWNED)
        written = []
        for k in log.bar(range(batch_num), total=batch_num, desc="batches", unit="batch"):
            names = [entries[i][0] for i in chosen[k * batch_size:(k + 1) * batch_size]]
            hwc = np.stack(list(pool.map(pets.load_image, [src_dir / "images" / f"{n}.jpg" for n in names])))
            batch = normalise(hwc.transpose(0, 3, 1, 2), mean, std)
            (tmp / f"calib_{k:04d}.bin").write_bytes(np.ascontiguousarray(batch, dtype="<f4").tobytes())
            written.append(Path(save_path) / f"calib_{k:04d}.bin")
    log(f"wrote {batch_num} files of float32 [{batch_size},3,{pets.CROP},{pets.CROP}] to {save_path}")
    return written
