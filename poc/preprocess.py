"""Stage 1: a data set's test split -> bin_data/img{i}.bin (uint8 HWC RGB, what the compiled model's AIPP input
takes), img_label.txt, class_names.txt and pic/img{i}.png, for any data set (``poc.formats.data_sets``)."""
from __future__ import annotations

import time

from PIL import Image

from poc.config import BIN_OWNED, PIC_OWNED
from poc.formats.image_split import ImageSplit
from poc.shared.bins import class_names_path, class_names_text
from poc.shared.errors import InputError, OutputSet
from poc.shared.progress import Log


def preprocess(split: ImageSplit, bin_path, label_path, pic_path=None, limit=None, skip_bad: bool = False,
               log: Log | None = None) -> int:
    """Write the bins, the label file, the class names (when the data set has them) and (unless ``pic_path`` is None)
    the PNGs; return the image count. A bad image stops the stage with its name, or with ``skip_bad`` is left out
    (and counted).

    All the outputs are built under temporary names and swapped in together at the end, so a re-run replaces them
    whole (no stale img*.bin from a larger earlier run, a user's other files kept) and a failure or an interrupt
    leaves the old ones.
    """
    log = log or Log(stage="preprocess")
    start = time.perf_counter()
    if not len(split):
        raise InputError(split.source, "holds no images")
    names = split.class_names
    outputs = OutputSet({"--bin_path": bin_path, "--pic_path": pic_path, "--label_path": label_path,
                         "class names": class_names_path(label_path) if names else None},
                        {"--src_path": split.data_path})
    n = len(split) if limit is None else min(int(limit), len(split))
    log(f"{split.source}: {len(split)} images, {split.num_classes} classes; writing {n}"
        + ("" if names else " (no class names beside it: results will name classes by index)"))
    with outputs:
        bins = outputs.folder(bin_path, BIN_OWNED)
        pics = outputs.folder(pic_path, PIC_OWNED) if pic_path else None
        lines, skipped = [], []
        images = split.each_hwc(range(n), keep_errors=skip_bad)
        for k, img in enumerate(log.bar(images, total=n, desc="bins" + (" + pngs" if pics else ""))):
            if isinstance(img, InputError):
                skipped.append(str(img))
                continue
            i = len(lines)
            (bins / f"img{i}.bin").write_bytes(img.tobytes())
            if pics is not None:
                # compress_level 1: PNGs are for looking at; the default level triples the stage's time.
                Image.fromarray(img, "RGB").save(pics / f"img{i}.png", compress_level=1)
            lines.append(f"img{i} {int(split.labels[k])}\n")
        if not lines:
            raise InputError(split.source, "no image could be read")
        outputs.file(label_path).write_text("".join(lines))
        if names:
            outputs.file(class_names_path(label_path)).write_text(class_names_text(names, split.class_names_source))
    if skipped:
        log(f"skipped {len(skipped)} unreadable images (--skip_bad), e.g. {skipped[0]}")
    log(f"wrote {len(lines)} bins ({split.hw}x{split.hw}x3) to {bin_path}, labels to {label_path}"
        + (f", PNGs to {pic_path}" if pic_path else "") + f" in {time.perf_counter() - start:.1f} s")
    return len(lines)
