"""Built-in demo data set: a deterministic synthetic CIFAR-100 in exactly the python-pickle format.

The real archive cannot be downloaded everywhere, so ``python -m poc.sample`` writes ``train``, ``test``
and ``meta`` into a folder. Class c = pattern (c // 10) x colour (c % 10): ten patterns (stripes in four
orientations, two checkerboards, cross-hatching, dots, speckle, plain) in ten colours, each image with its own
jitter of phase, frequency, position, colours and pixel noise, so a ResNet can tell the classes apart but
no two images are alike.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from poc.formats import cifar, pets
from poc.formats.pets import CLASSES
from poc.shared.errors import OutputSet
from poc.shared.progress import Log

PATTERNS = ("hstripes", "vstripes", "dstripes", "astripes", "checker", "finechecker", "hatch", "dots", "speckle",
            "plain")
COLOURS = {  # name: RGB, far apart in RGB so the colour survives noise and jitter
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (40, 70, 230), "yellow": (235, 220, 50),
    "magenta": (220, 50, 210), "cyan": (50, 215, 225), "orange": (245, 140, 30), "white": (240, 240, 240),
    "pink": (250, 150, 190), "grey": (150, 150, 150),
}
NUM_CLASSES = len(PATTERNS) * len(COLOURS)


def class_names() -> list[str]:
    colours = list(COLOURS)
    return [f"{colours[c % 10]}_{PATTERNS[c // 10]}" for c in range(NUM_CLASSES)]


def _pattern_masks(pattern: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Foreground masks in [0, 1], float32 [n, 32, 32], for each image's pattern index."""
    n = len(pattern)
    yy, xx = np.mgrid[0:cifar.CIFAR_HW, 0:cifar.CIFAR_HW].astype(np.float32)
    yy, xx = yy[None], xx[None]
    freq = rng.uniform(0.28, 0.42, (n, 1, 1)).astype(np.float32)    # stripe angular frequency
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    masks = np.empty((n, cifar.CIFAR_HW, cifar.CIFAR_HW), np.float32)
    for p in range(len(PATTERNS)):
        sel = pattern == p
        k = int(sel.sum())
        if not k:
            continue
        f, ph = freq[sel], phase[sel]
        if p < 4:  # stripes: horizontal, vertical, diagonal, anti-diagonal
            axis, scale = ((yy, 1), (xx, 1), (xx + yy, 0.72), (xx - yy, 0.72))[p]
            m = 0.5 + 0.5 * np.sin(f * scale * axis + ph)
        elif p == 4:
            m = np.sin(f * xx + ph) * np.sin(f * yy + ph[::-1]) > 0
        elif p == 5:
            m = np.sin(2.8 * f * xx + ph) * np.sin(2.8 * f * yy + ph[::-1]) > 0
        elif p == 6:
            m = (np.sin(0.72 * f * (xx + yy) + ph) > 0.75) | (np.sin(0.72 * f * (xx - yy) + ph[::-1]) > 0.75)
        elif p == 7:
            m = (np.sin(1.2 * f * xx + ph) > 0.25) & (np.sin(1.2 * f * yy + ph[::-1]) > 0.25)
        elif p == 8:  # 2x2-pixel random speckle
            m = np.kron(rng.random((k, cifar.CIFAR_HW // 2, cifar.CIFAR_HW // 2)) > 0.5, np.ones((1, 2, 2)))
        else:  # plain fill, a little uneven
            m = rng.uniform(0.85, 1.0, (k, 1, 1)) - 0.1 * np.sin(0.2 * f * xx + ph)
        masks[sel] = m
    return masks


def make_images(labels: np.ndarray, rng: np.random.Generator, cifar10: bool = False) -> np.ndarray:
    """uint8 [n, 3072] CIFAR rows (R, G, B planes) for the given class labels: CIFAR-100 class c is pattern c // 10
    in colour c % 10; CIFAR-10 class c is pattern c in colour c."""
    n = len(labels)
    patterns, colours = (labels, labels) if cifar10 else (labels // 10, labels % 10)
    masks = _pattern_masks(patterns, rng)[:, None]                              # [n,1,32,32]
    palette = np.asarray(list(COLOURS.values()), np.float32)
    fg = palette[colours] + rng.normal(0, 8, (n, 3))                            # colour jitter
    bg = rng.uniform(15, 75, (n, 1)) + rng.normal(0, 6, (n, 3))                  # dark, slightly tinted
    img = bg[:, :, None, None] + masks * (fg - bg)[:, :, None, None]
    img += rng.normal(0, 8, img.shape)                                          # sensor noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(n, -1)


def write_demo_dataset(out_dir, train_per_class: int = 30, test_per_class: int = 20, seed: int = 0,
                       log: Log | None = None, cifar10: bool = False) -> Path:
    """CIFAR-100's ``train``, ``test``, ``meta``; or (``cifar10``) CIFAR-10's ``data_batch_1``, ``test_batch``,
    ``batches.meta`` with 10 classes."""
    log = log or Log(stage="sample")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    classes = 10 if cifar10 else NUM_CLASSES
    names = (("data_batch_1", "test_batch", "batches.meta") if cifar10 else ("train", "test", "meta"))
    with OutputSet({"--out": out}, {}) as outputs:  # the splits and the meta file appear together or not at all
        tmp = outputs.folder(out, "|".join(names))
        for split, per_class in ((names[0], train_per_class), (names[1], test_per_class)):
            labels = rng.permutation(np.repeat(np.arange(classes), per_class))
            cifar.write_split(tmp / split, make_images(labels, rng, cifar10), labels, cifar10=cifar10,
                              batch_label=f"{split} batch 1 of 1 (poc demo data, seed {seed})")
        if cifar10:
            colours = list(COLOURS)
            cifar.write_meta(tmp / names[2], [f"{colours[c]}_{PATTERNS[c]}" for c in range(10)])
        else:
            cifar.write_meta(tmp / names[2], class_names(), [f"pattern_{p}" for p in PATTERNS])
    log(f"wrote demo {'CIFAR-10' if cifar10 else 'CIFAR-100'} to {out}: {train_per_class * classes} train, "
        f"{test_per_class * classes} test images, {classes} classes (seed {seed})")
    return out


def write_demo_pets(out_dir, trainval_per_class: int = 12, test_per_class: int = 6, seed: int = 0,
                    log: Log | None = None) -> Path:
    """A synthetic Oxford-IIIT Pet: 37 classes (breed c = pattern c // 10 in colour c % 10, the CIFAR-100 demo's
    first 37), images/<Breed>_<n>.jpg of varied sizes and both orientations (one 320x465, whose resize only MindSpore's
    float arithmetic gets right), a few odd files (CMYK JPEG, PNG bytes under .jpg), and annotations/list.txt,
    trainval.txt, test.txt in the real layout."""
    from PIL import Image

    log = log or Log(stage="sample")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    per_class = trainval_per_class + test_per_class
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    small = make_images(labels, rng).reshape(-1, 3, cifar.CIFAR_HW, cifar.CIFAR_HW).transpose(0, 2, 3, 1)
    with OutputSet({"--out": out}, {}) as outputs:
        tmp = outputs.folder(out, f"{pets.IMAGES}|{pets.ANNOTATIONS}")
        (tmp / pets.IMAGES).mkdir()
        (tmp / pets.ANNOTATIONS).mkdir()
        lines = {"trainval": [], "test": []}
        for i, (label, img) in enumerate(zip(labels, small, strict=True)):
            n = i % per_class + 1
            name = f"{CLASSES[label]}_{n}"
            w, h = int(rng.integers(240, 420)), int(rng.integers(240, 420))
            if i == per_class - 1:  # a test image whose resize needs MindSpore's float arithmetic (256 x 371, not 372)
                w, h = 320, 465
            pic = Image.fromarray(img, "RGB").resize((w, h), Image.BILINEAR)
            if i % 97 == 3:
                pic.convert("CMYK").save(pets.image_path(tmp, name), "JPEG", quality=92)
            elif i % 97 == 50:
                pic.save(pets.image_path(tmp, name), "PNG")  # PNG data under a .jpg name, as in the real set
            else:
                pic.save(pets.image_path(tmp, name), "JPEG", quality=92)
            species = 1 if CLASSES[label][0].isupper() else 2
            lines["trainval" if n <= trainval_per_class else "test"].append(f"{name} {label + 1} {species} {n}\n")
        header = "".join(f"#{h}\n" for h in ("Image CLASS-ID SPECIES BREED ID", "ID: 1:37 Class ids",
                                             "SPECIES: 1:Cat 2:Dog", "BREED ID: 1-25:Cat 1:12:Dog",
                                             "All images with 1st letter as captial are cat images",
                                             "images with small first letter are dog images"))
        pets.split_path(tmp, "trainval.txt").write_text("".join(lines["trainval"]))
        pets.split_path(tmp, "test.txt").write_text("".join(lines["test"]))
        pets.split_path(tmp, "list.txt").write_text(header + "".join(lines["trainval"] + lines["test"]))
    log(f"wrote demo Oxford-IIIT Pet to {out}: {len(lines['trainval'])} trainval, {len(lines['test'])} test images, "
        f"{len(CLASSES)} classes (seed {seed})")
    return out


# Images per class of each demo set (train, test): 3,000 and 2,000 for either CIFAR; the Pet set's photos are bigger.
DEMO_SIZES = {"cifar100": (30, 20), "cifar10": (300, 200), "pets": (12, 6)}


def write_demo_set(kind: str, out_dir, train_per_class: int | None = None, test_per_class: int | None = None,
                   seed: int = 0, log: Log | None = None) -> Path:
    """The built-in demo set of data set ``kind`` (a profile's ``dataset``), in that data set's own format."""
    train_per_class = train_per_class or DEMO_SIZES[kind][0]
    test_per_class = test_per_class or DEMO_SIZES[kind][1]
    if kind == "pets":
        return write_demo_pets(out_dir, train_per_class, test_per_class, seed, log)
    return write_demo_dataset(out_dir, train_per_class, test_per_class, seed, log, cifar10=kind == "cifar10")
