"""Which module reads a profile's data set (its ``dataset`` field), where a named split of a data folder is, and the
split itself: the one door every stage goes through to read images and labels."""
from __future__ import annotations

from pathlib import Path

from poc.formats import cifar, pets
from poc.formats.image_split import ImageSplit

READERS = {"cifar100": cifar, "cifar10": cifar, "pets": pets}


def split_path(kind: str, data_dir, split: str) -> Path:
    """The file that defines split ``split`` of the ``kind`` data set unpacked at ``data_dir``."""
    return READERS[kind].split_path(data_dir, split)


def open_split(kind: str, path) -> ImageSplit:
    """The split whose defining file is ``path`` (a CIFAR pickle, a Pet split file)."""
    return READERS[kind].open_split(path)
