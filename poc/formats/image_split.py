"""One split of an image-classification data set as every stage reads it, whatever its files: labels, the class
count and names, and uint8 HWC RGB images read on demand (CIFAR's from memory, the Pet photos decoded on all cores).
Each data set's module makes one (``cifar.open_split``, ``pets.open_split``); ``poc.formats.data_sets`` picks the
module for a profile's data set."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poc.shared.errors import InputError


@dataclass
class ImageSplit:
    source: Path  # the file that defines the split: a CIFAR pickle, a Pet split file
    labels: np.ndarray  # int64 [n]
    num_classes: int
    hw: int  # every image is hw x hw x 3
    read_image: Callable[[int], np.ndarray]  # image i, uint8 [hw,hw,3]; an unreadable one raises InputError
    class_names: list[str] | None = None  # None: the data set's names are not beside it
    class_names_source: Path | None = None
    decode_threads: int = 1  # >1: images are files to decode, read side by side
    data_path: Path | None = None  # the data set's file or folder, which no output may overlap (default: source)
    # images as uint8 [n,3,hw,hw] straight from storage kept channel-first (CIFAR's rows); None: from ``hwc``
    read_chw: Callable[[np.ndarray], np.ndarray] | None = None

    def __post_init__(self):
        self.data_path = self.data_path or self.source

    def __len__(self) -> int:
        return len(self.labels)

    def each_hwc(self, indices: Sequence[int], keep_errors: bool = False) -> Iterator[np.ndarray | InputError]:
        """The images at ``indices``, in order, read ahead on ``decode_threads`` threads; with ``keep_errors`` an
        unreadable image comes as its InputError instead of stopping the iteration."""
        def read(i):
            try:
                return self.read_image(int(i))
            except InputError as err:
                if not keep_errors:
                    raise
                return err
        if self.decode_threads <= 1:
            yield from map(read, indices)
            return
        pool = ThreadPoolExecutor(max_workers=self.decode_threads)
        try:
            yield from pool.map(read, indices)
        finally:  # stopped early (an error, an interrupt): the images not started are not decoded
            pool.shutdown(wait=True, cancel_futures=True)

    def hwc(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """uint8 [n,hw,hw,3] (all images when ``indices`` is None)."""
        indices = range(len(self)) if indices is None else indices
        out = np.empty((len(indices), self.hw, self.hw, 3), np.uint8)
        for k, img in enumerate(self.each_hwc(indices)):
            out[k] = img
        return out

    def chw(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """uint8 [n,3,hw,hw] without a copy: in the order the images are stored (CIFAR's channel planes: contiguous;
        decoded photos: a channel-last view). PyTorch may round a strided batch differently, so this is what the
        demo weights have always been fitted on."""
        if self.read_chw is not None:
            return self.read_chw(np.arange(len(self)) if indices is None else np.asarray(indices))
        return self.hwc(indices).transpose(0, 3, 1, 2)


def decode_threads() -> int:
    """Threads for decoding image files: one per core this process may use, two at least (decoding waits on reads)."""
    return max(2, len(os.sched_getaffinity(0)))
