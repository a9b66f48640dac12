"""Oxford-IIIT Pet: its split files, its images (decoded with Pillow and converted to RGB, whatever the file holds:
grayscale, RGBA, CMYK, PNG data under a .jpg name), and ResNet50-0.65x's eval transform up to its uint8 stage
(``src/pet_dataset.py``, MindSpore py_transforms semantics): the shorter side resized to 256 (bilinear, the other
side truncated), then a center crop of 224 with rounded offsets. The normalisation is AIPP's job."""
from __future__ import annotations

import re
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from poc.formats.image_split import ImageSplit, decode_threads
from poc.shared.bins import read_text_file
from poc.shared.errors import InputError, regular_file

CLASSES = ("Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal", "Birman",
           "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau", "english_cocker_spaniel",
           "english_setter", "german_shorthaired", "great_pyrenees", "havanese", "japanese_chin", "keeshond",
           "leonberger", "Maine_Coon", "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll",
           "Russian_Blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu", "Siamese", "Sphynx",
           "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier")
RESIZE, CROP = 256, 224
# Larger images are refused: a decompression bomb, not a pet photo. Decoded whole (the transform resizes the full
# image, so a reduced decode would change the crop), one such image takes up to 4 bytes a pixel, twice over.
MAX_PIXELS = 36_000_000
BIG_PIXELS = 4_000_000  # images above this decode one at a time, so that the decoding threads never add them up
_BIG_DECODE = threading.Lock()
# The data set's folder, as its archives unpack: images/{Breed}_{n}.jpg and annotations/{split file}
IMAGES, ANNOTATIONS = "images", "annotations"
SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a split is a file name inside annotations/


def split_file(src_dir, split: str) -> Path:
    """``{src_dir}/annotations/{split}``; a split that is a path rather than a name is refused."""
    if not SPLIT_NAME.fullmatch(split) or ".." in split:
        raise InputError("--split", f"'{split[:60]}': a file name inside annotations/ (e.g. test.txt), not a path")
    return Path(src_dir) / ANNOTATIONS / split


def read_split(path) -> list[tuple[str, int]]:
    """``annotations/test.txt`` / ``trainval.txt`` / ``list.txt``: ``Image CLASS-ID SPECIES BREED-ID`` lines (``#``
    lines skipped); label = CLASS-ID - 1, checked against the image name's breed."""
    path = Path(path)
    text = read_text_file(path, "split file (annotations/test.txt or trainval.txt)")
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts[1:]):
            raise InputError(path, f"line {n}: expected 'Image CLASS-ID SPECIES BREED-ID', found {line.strip()[:60]!r}")
        label = int(parts[1]) - 1
        if not 0 <= label < len(CLASSES):
            raise InputError(path, f"line {n}: CLASS-ID {parts[1]} is outside 1..{len(CLASSES)}")
        if parts[0].rsplit("_", 1)[0] != CLASSES[label]:
            raise InputError(path, f"line {n}: {parts[0]} is not of class {CLASSES[label]} (CLASS-ID {parts[1]})")
        out.append((parts[0], label))
    if not out:
        raise InputError(path, "lists no images")
    return out


def resized_size(w: int, h: int) -> tuple[int, int]:
    """The size MindSpore's ``Resize(256)`` gives a w x h image, in its own float arithmetic: the aspect ratio first,
    as a Python float, then the long side truncated. Not ``int(256 * h / w)``: for 320x465, 256 / (320 / 465) is
    371.99999999999994, so MindSpore makes it 320 -> 256 x 371, where exact arithmetic gives 372."""
    if (w <= h and w == RESIZE) or (h <= w and h == RESIZE):
        return w, h
    aspect = w / h
    return (RESIZE, int(RESIZE / aspect)) if w < h else (int(RESIZE * aspect), RESIZE)


def eval_crop(img: Image.Image) -> np.ndarray:
    """uint8 HWC RGB [224,224,3]: shorter side 256 (bilinear; unchanged when it already is 256), center crop 224."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    size = resized_size(*img.size)
    if size != img.size:
        img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    top, left = int(round((h - CROP) / 2.0)), int(round((w - CROP) / 2.0))
    return np.asarray(img.crop((left, top, left + CROP, top + CROP)), dtype=np.uint8)


def load_image(path: Path) -> np.ndarray:
    """One image through the eval transform; a missing, truncated or undecodable file is one InputError."""
    regular_file(path, "image (listed in the split file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise InputError(path, f"{img.width}x{img.height} pixels: more than the {MAX_PIXELS} a photo "
                                           "is allowed")
                if img.width * img.height <= BIG_PIXELS:
                    img.load()
                    return eval_crop(img)
                with _BIG_DECODE:
                    img.load()
                    return eval_crop(img)
    except FileNotFoundError:
        raise InputError(path, "no such image (listed in the split file)") from None
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(path, f"not a readable image ({type(err).__name__}: {str(err)[:100]})") from None


def image_path(data_dir, name: str) -> Path:
    return Path(data_dir) / IMAGES / f"{name}.jpg"


def split_path(data_dir, split: str) -> Path:
    return split_file(data_dir, split)


def open_split(path) -> ImageSplit:
    """A split file (``annotations/test.txt``) as an ImageSplit: its images are ``images/{name}.jpg`` beside
    ``annotations/``, decoded through the eval transform on all cores when read."""
    path = Path(path)
    entries = read_split(path)
    files = [image_path(path.parent.parent, name) for name, _ in entries]
    return ImageSplit(path, np.array([label for _, label in entries], np.int64), len(CLASSES), CROP,
                      lambda i: load_image(files[i]), list(CLASSES), path, decode_threads(), path.parent.parent)
