"""Built-in demo data set: a deterministic synthetic CIFAR-100 in exactly the python-pickle format.

The real archive cannot be downloaded everywhere, so ``python -m poc.sample`` writes ``train``, ``test``
and ``meta`` into a folder. Class c = pattern (c // 10) x colour (c % 10): ten patterns (stripes in four
orientations, two checkerboards, cross-hatching, dots, speckle, plain) in ten colours, each image with its own
jitter of phase, frequency, position, colours and pixel noise, so a ResNet can tell the classes apart but
no two images are alike.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import cifar
from .config import DEMO_DATA_DIR, IMAGE_HW
from .errors import OutputSet, run_main
from .progress import Log

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
    yy, xx = np.mgrid[0:IMAGE_HW, 0:IMAGE_HW].astype(np.float32)
    yy, xx = yy[None], xx[None]
    freq = rng.uniform(0.28, 0.42, (n, 1, 1)).astype(np.float32)    # stripe angular frequency
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    masks = np.empty((n, IMAGE_HW, IMAGE_HW), np.float32)
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
            m = np.kron(rng.random((k, IMAGE_HW // 2, IMAGE_HW // 2)) > 0.5, np.ones((1, 2, 2)))
        else:  # plain fill, a little uneven
            m = rng.uniform(0.85, 1.0, (k, 1, 1)) - 0.1 * np.sin(0.2 * f * xx + ph)
        masks[sel] = m
    return masks


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [n, 3072] CIFAR rows (R, G, B planes) for the given class labels."""
    n = len(labels)
    masks = _pattern_masks(labels // 10, rng)[:, None]                          # [n,1,32,32]
    palette = np.asarray(list(COLOURS.values()), np.float32)
    fg = palette[labels % 10] + rng.normal(0, 8, (n, 3))                        # colour jitter
    bg = rng.uniform(15, 75, (n, 1)) + rng.normal(0, 6, (n, 3))                  # dark, slightly tinted
    img = bg[:, :, None, None] + masks * (fg - bg)[:, :, None, None]
    img += rng.normal(0, 8, img.shape)                                          # sensor noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(n, -1)


def write_demo_dataset(out_dir, train_per_class: int = 30, test_per_class: int = 20, seed: int = 0,
                       log: Log | None = None) -> Path:
    log = log or Log(stage="sample")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    with OutputSet({"--out": out}, {}) as outputs:  # train, test and meta appear together or not at all
        tmp = outputs.folder(out, r"train|test|meta")
        for split, per_class in (("train", train_per_class), ("test", test_per_class)):
            labels = rng.permutation(np.repeat(np.arange(NUM_CLASSES), per_class))
            cifar.write_split(tmp / split, make_images(labels, rng), labels,
                              batch_label=f"{split} batch 1 of 1 (poc demo data, seed {seed})")
        cifar.write_meta(tmp / "meta", class_names(), [f"pattern_{p}" for p in PATTERNS])
    log(f"wrote demo CIFAR-100 to {out}: {train_per_class * NUM_CLASSES} train, "
        f"{test_per_class * NUM_CLASSES} test images, {NUM_CLASSES} classes (seed {seed})")
    return out


def main():
    p = argparse.ArgumentParser(description="Write the built-in demo data set in CIFAR-100 python format.")
    p.add_argument("--out", default=DEMO_DATA_DIR, help="output folder (default: %(default)s)")
    p.add_argument("--train_per_class", type=int, default=30, help="training images per class (default: 30)")
    p.add_argument("--test_per_class", type=int, default=20, help="test images per class (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    args = p.parse_args()
    if args.train_per_class < 1 or args.test_per_class < 1:
        p.error("--train_per_class and --test_per_class must be at least 1")
    write_demo_dataset(args.out, args.train_per_class, args.test_per_class, args.seed, Log(args.quiet, "sample"))


if __name__ == "__main__":
    run_main(main)
