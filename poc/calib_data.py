"""Stage 2: calibration batches for AMCT (and the CPU quantizer): float32 NCHW [24,3,32,32] per file.

Each file holds 24 *distinct* images, normalised in RGB order. (The ModelZoo original repeats one image 24
times and reads it in BGR order against RGB constants; both are bugs and are not reproduced.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from poc.config import BATCH_SIZE, CALIB_OWNED, MEAN_RGB_255, STD_RGB_255
from poc.formats import cifar
from poc.shared.bins import normalise, spread_sample
from poc.shared.errors import InputError, OutputSet
from poc.shared.progress import Log


def default_source(cifar_dir, profile=None) -> Path:
    """The training split when it exists (calibrating on test images would leak into the accuracy), else the test
    split (``train`` / ``test`` for CIFAR-100, the profile's for another data set)."""
    calib, evaluation = (profile.calib_split, profile.eval_split) if profile is not None else ("train", "test")
    train = Path(cifar_dir) / calib
    return train if train.exists() else Path(cifar_dir) / evaluation


def write_calibration(outputs: OutputSet, what, labels: np.ndarray, load_chw, save_path, batch_size: int,
                      batch_num: int, seed: int, mean, std, log: Log) -> list[Path]:
    """``batch_num`` files ``calib_{k:04d}.bin`` (names sort in batch order, as AMCT reads them), each ``batch_size``
    distinct images spread over the classes, ``load_chw(indices)`` giving them as uint8 [n,3,H,W], normalised."""
    need = batch_size * batch_num
    if need > len(labels):
        raise InputError(what, f"{len(labels)} images, but {batch_num} batches of {batch_size} distinct images "
                               f"need {need}")
    chosen = spread_sample(labels, need, seed)
    log(f"{what}: {batch_num} batches x {batch_size} distinct images over {len(np.unique(labels[chosen]))} classes "
        f"(seed {seed})")
    written = []
    with outputs:
        tmp = outputs.folder(save_path, CALIB_OWNED)
        for k in log.bar(range(batch_num), total=batch_num, desc="batches", unit="batch"):
            batch = normalise(load_chw(chosen[k * batch_size:(k + 1) * batch_size]), mean, std)
            name = f"calib_{k:04d}.bin"
            (tmp / name).write_bytes(np.ascontiguousarray(batch, dtype="<f4").tobytes())
            written.append(Path(save_path) / name)
    log(f"wrote {batch_num} files of float32 [{batch_size},{','.join(map(str, batch.shape[1:]))}] to {save_path}")
    return written


def create_quant_data(src_path, save_path, batch_size: int = BATCH_SIZE, batch_num: int = 8, seed: int = 0,
                      log: Log | None = None, mean=MEAN_RGB_255, std=STD_RGB_255) -> list[Path]:
    """Calibration batches from a CIFAR pickle."""
    log = log or Log(stage="calib-data")
    outputs = OutputSet({"--save_path": save_path}, {"--src_path": src_path})
    split = cifar.load_split(src_path)
    return write_calibration(outputs, src_path, split.labels, split.chw, save_path, batch_size, batch_num, seed, mean,
                             std, log)


def create_quant_data_pets(src_dir, split: str, save_path, batch_size: int = BATCH_SIZE, batch_num: int = 8,
                           seed: int = 0, log: Log | None = None, mean=MEAN_RGB_255, std=STD_RGB_255) -> list[Path]:
    """The same for Oxford-IIIT Pet: images of ``annotations/{split}`` through the eval transform (224x224)."""
    from concurrent.futures import ThreadPoolExecutor

    from poc.formats import pets
    log = log or Log(stage="calib-data")
    src_dir = Path(src_dir)
    outputs = OutputSet({"--save_path": save_path}, {"--src_path": src_dir})
    entries = pets.read_split(src_dir / "annotations" / split)
    with ThreadPoolExecutor(max_workers=2) as pool:
        def load_chw(indices):
            paths = [src_dir / "images" / f"{entries[i][0]}.jpg" for i in indices]
            return np.stack(list(pool.map(pets.load_image, paths))).transpose(0, 3, 1, 2)
        return write_calibration(outputs, src_dir / "annotations" / split, np.array([lb for _, lb in entries]),
                                 load_chw, save_path, batch_size, batch_num, seed, mean, std, log)
