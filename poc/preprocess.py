"""Stage 1: CIFAR pickle -> bin_data/img{i}.bin (uint8 HWC RGB), img_label.txt, pic/img{i}.png."""
from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image

from poc.config import BIN_OWNED, PIC_OWNED
from poc.formats import cifar
from poc.shared.bins import class_names_path, class_names_text
from poc.shared.errors import InputError, OutputSet
from poc.shared.progress import Log


def preprocess(src_path, bin_path, label_path, pic_path=None, limit=None, log: Log | None = None) -> int:
    """Write the bins, the label file and (unless ``pic_path`` is None) the PNGs; return the image count.

    All three outputs are built under temporary names and swapped in together at the end, so a re-run
    replaces them whole (no stale img*.bin from a larger earlier run, a user's other files kept) and a failure
    or an interrupt leaves the old ones.
    """
    log = log or Log(stage="preprocess")
    start = time.perf_counter()
    split = cifar.load_split(src_path)
    if not len(split):
        raise InputError(src_path, "holds no images")
    meta = cifar.meta_beside(src_path)
    names = cifar.load_class_names(meta) if meta else None
    if names is not None and len(names) != split.num_classes:
        raise InputError(meta, f"{len(names)} class names for the {split.num_classes} classes of {src_path}")
    outputs = OutputSet({"--bin_path": bin_path, "--pic_path": pic_path, "--label_path": label_path,
                         "class names": class_names_path(label_path) if names else None}, {"--src_path": src_path})
    n = len(split) if limit is None else min(int(limit), len(split))
    hwc = split.hwc(slice(0, n))  # one vectorised CHW -> HWC transpose for the whole set
    labels = split.labels[:n]
    log(f"{src_path}: {len(split)} images, {split.num_classes} classes; writing {n}"
        + ("" if names else " (no meta beside it: results will name classes by index)"))

    with outputs:
        bins = outputs.folder(bin_path, BIN_OWNED)
        pics = outputs.folder(pic_path, PIC_OWNED) if pic_path else None
        outputs.file(label_path).write_text("".join(f"img{i} {int(labels[i])}\n" for i in range(n)))
        if names:
            outputs.file(class_names_path(label_path)).write_text(class_names_text(names, meta))
        for i in log.bar(range(n), total=n, desc="bins" + (" + pngs" if pics else "")):
            (bins / f"img{i}.bin").write_bytes(hwc[i].tobytes())
            if pics is not None:
                # compress_level 1: PNGs are for looking at; the default level triples the stage's time.
                Image.fromarray(hwc[i], "RGB").save(pics / f"img{i}.png", compress_level=1)
    elapsed = time.perf_counter() - start
    log(f"wrote {n} bins to {bin_path}, labels to {label_path}"
        + (f", PNGs to {pic_path}" if pic_path else "") + f" in {elapsed:.1f} s")
    return n


def preprocess_pets(src_dir, split: str, bin_path, label_path, pic_path=None, limit=None, skip_bad: bool = False,
                    log: Log | None = None) -> int:
    """Oxford-IIIT Pet ``{src_dir}/annotations/{split}`` -> ``img{i}.bin`` (224x224x3 uint8 HWC RGB after the model's
    eval transform), ``img_label.txt``, ``pic/img{i}.png``; images decoded on all cores. A bad image stops the stage
    with its name, or with ``skip_bad`` is left out (and counted)."""
    from concurrent.futures import ThreadPoolExecutor

    from poc.formats import pets
    log = log or Log(stage="preprocess")
    start = time.perf_counter()
    src_dir = Path(src_dir)
    split_file = pets.split_file(src_dir, split)
    outputs = OutputSet({"--bin_path": bin_path, "--pic_path": pic_path, "--label_path": label_path,
                         "class names": class_names_path(label_path)}, {"--src_path": src_dir})
    entries = pets.read_split(split_file)[:limit]
    paths = [src_dir / "images" / f"{name}.jpg" for name, _ in entries]
    log(f"{split_file}: {len(entries)} images, {len(pets.CLASSES)} classes")

    def load(path):
        try:
            return pets.load_image(path)
        except InputError as err:
            if not skip_bad:
                raise
            return err

    with outputs, ThreadPoolExecutor(max_workers=max(2, len(os.sched_getaffinity(0)))) as pool:
        bins = outputs.folder(bin_path, BIN_OWNED)
        pics = outputs.folder(pic_path, PIC_OWNED) if pic_path else None
        lines, skipped, i = [], [], 0
        for (_name, label), img in zip(entries, log.bar(pool.map(load, paths), total=len(paths), desc="decode + crop"),
                                      strict=True):
            if isinstance(img, InputError):
                skipped.append(str(img))
                continue
            (bins / f"img{i}.bin").write_bytes(img.tobytes())
            if pics is not None:
                Image.fromarray(img, "RGB").save(pics / f"img{i}.png", compress_level=1)
            lines.append(f"img{i} {label}\n")
            i += 1
        if not lines:
            raise InputError(split_file, "no image could be read")
        outputs.file(label_path).write_text("".join(lines))
        outputs.file(class_names_path(label_path)).write_text(class_names_text(pets.CLASSES, split_file))
    if skipped:
        log(f"skipped {len(skipped)} unreadable images (--skip_bad), e.g. {skipped[0]}")
    log(f"wrote {i} bins ({pets.CROP}x{pets.CROP}x3) to {bin_path}, labels to {label_path}"
        + (f", PNGs to {pic_path}" if pic_path else "") + f" in {time.perf_counter() - start:.1f} s")
    return i
