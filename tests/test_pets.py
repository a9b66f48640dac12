"""Oxford-IIIT Pet: the split files, odd images, and the eval transform byte-exact against Pillow computing the
rule of MODELS.md directly; preprocess_pets.py end to end."""
import os

import numpy as np
import pytest
from conftest import run_script
from PIL import Image

from poc.formats import pets
from poc.shared.errors import InputError


def _rule(img: Image.Image) -> np.ndarray:
    """MODELS.md, step by step, as MindSpore's py_transforms compute it: RGB; aspect = w / h (a float) first, then
    shorter side 256 bilinear and the other int(256 / aspect) (portrait) or int(256 * aspect) (landscape), unchanged
    when the shorter side is 256; top = int(round((H - 224) / 2)), left likewise; a 224 crop."""
    img = img.convert("RGB")
    w, h = img.size
    if min(w, h) != 256:
        aspect = w / h
        img = img.resize((256, int(256 / aspect)) if w < h else (int(256 * aspect), 256), Image.BILINEAR)
    W, H = img.size
    top, left = int(round((H - 224) / 2)), int(round((W - 224) / 2))
    return np.array(img)[top:top + 224, left:left + 224]


def _exact(w, h):
    """The resized size in exact arithmetic (what the toolkit computed before)."""
    return (256, 256 * h // w) if w < h else (256 * w // h, 256)


def _disagreeing_sizes(limit: int, orientation: str) -> list[tuple[int, int]]:
    """Sizes up to ``limit`` where MindSpore's float arithmetic and exact arithmetic give different resized sizes."""
    out = []
    for short in range(100, limit + 1):
        for long in range(short + 1, limit + 1):
            w, h = (short, long) if orientation == "portrait" else (long, short)
            if short != 256 and pets.resized_size(w, h) != _exact(w, h):
                out.append((w, h))
    return out


def test_the_resize_is_mindsporess_float_arithmetic():
    portrait = _disagreeing_sizes(1000, "portrait")
    assert (320, 465) in portrait and len(portrait) == 148  # of the 811,801 sizes 100-1000 x 100-1000
    assert pets.resized_size(320, 465) == (256, 371) and _exact(320, 465) == (256, 372)
    # Landscape cannot disagree: 256 * (w / h) only scales the rounded quotient by a power of two, which is exact.
    assert _disagreeing_sizes(700, "landscape") == []
    assert pets.resized_size(465, 320) == (372, 256) == _exact(465, 320)


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (257, 300), (300, 257), (256, 301), (301, 256),
                                  (256, 256), (224, 1000), (1, 1), (333, 333),
                                  (320, 465), (465, 320), (128, 186), (112, 651), (186, 128)])
def test_eval_crop_is_the_rule_byte_for_byte(size):
    rng = np.random.default_rng(sum(size))
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    got = pets.eval_crop(img)
    assert got.shape == (224, 224, 3) and got.dtype == np.uint8
    assert np.array_equal(got, _rule(img))
    if size == (320, 465):  # where the arithmetic matters, the crop is another one than exact arithmetic gives
        exact = np.array(img.resize(_exact(*size), Image.BILINEAR))[74:74 + 224, 16:16 + 224]
        assert np.abs(exact.astype(int) - got).max() > 0


def _pet_folder(root, names_labels, odd=None):
    """A data set in the Pet layout: images/<Name>_<n>.jpg, annotations/test.txt (+ trainval.txt)."""
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for name, _ in names_labels:
        Image.fromarray(rng.integers(0, 256, (240, 300, 3), dtype=np.uint8)).save(root / "images" / f"{name}.jpg",
                                                                                  quality=90)
    lines = "".join(f"{name} {label + 1} {1 if pets.CLASSES[label][0].isupper() else 2} 1\n"
                    for name, label in names_labels)
    (root / "annotations" / "test.txt").write_text(lines)
    return root


def test_odd_images_decode_as_rgb(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    cases = {
        "gray": Image.fromarray(rgb[..., 0], "L"), "rgba": Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA"),
        "cmyk": Image.fromarray(rgb, "RGB").convert("CMYK"), "tiny": Image.fromarray(rgb[:1, :1], "RGB"),
    }
    for name, img in cases.items():
        fmt = "PNG" if name == "rgba" else "JPEG"  # RGBA: PNG bytes under a .jpg name, as in the real set
        img.save(tmp_path / f"{name}.jpg", format=fmt)
        got = pets.load_image(tmp_path / f"{name}.jpg")
        with Image.open(tmp_path / f"{name}.jpg") as ref:
            assert np.array_equal(got, _rule(ref)), name
    good = (tmp_path / "gray.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 3])
    with pytest.raises(InputError, match="cut.jpg: not a readable image"):
        pets.load_image(tmp_path / "cut.jpg")
    with pytest.raises(InputError, match="no such image"):
        pets.load_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize("text, message", [
    ("Abyssinian_1 1 1\n", "line 1: expected 'Image CLASS-ID SPECIES BREED-ID'"),
    ("Abyssinian_1 38 1 1\n", "line 1: CLASS-ID 38 is outside 1..37"),
    ("Abyssinian_1 2 1 1\n", "line 1: Abyssinian_1 is not of class american_bulldog"),
    ("# comment only\n", "lists no images"),
])
def test_split_file_faults(tmp_path, text, message):
    (tmp_path / "test.txt").write_text(text)
    with pytest.raises(InputError, match=message):
        pets.read_split(tmp_path / "test.txt")


def test_preprocess_pets_end_to_end(tmp_path):
    entries = [(f"{pets.CLASSES[c]}_{k}", c) for c in (0, 5, 36) for k in (1, 2)]
    root = _pet_folder(tmp_path / "oxford-iiit-pet", entries)
    run_script(["preprocess_pets.py", "--src_path", str(root), "--quiet"], cwd=tmp_path)
    work = tmp_path / "ms-resnet50-0.65x-pets"  # the Pet profile's own folder: its defaults
    assert sorted(os.listdir(work / "bin_data")) == sorted(f"img{i}.bin" for i in range(6))
    assert (work / "img_label.txt").read_text().splitlines() == [f"img{i} {c}" for i, (_, c) in enumerate(entries)]
    names = (work / "class_names.txt").read_text().splitlines()
    assert len(names) == 37 and names[0] == "Abyssinian" and names[36] == "yorkshire_terrier"
    for i, (name, _) in enumerate(entries):
        raw = (work / "bin_data" / f"img{i}.bin").read_bytes()
        with Image.open(root / "images" / f"{name}.jpg") as img:
            assert len(raw) == 150_528 and raw == _rule(img).tobytes()
    assert np.array_equal(np.asarray(Image.open(work / "pic" / "img3.png")),
                          np.frombuffer((work / "bin_data" / "img3.bin").read_bytes(), np.uint8).reshape(224, 224, 3))
    # a corrupt image: one line naming it and no output; --skip_bad leaves it out and says so
    (root / "images" / f"{entries[2][0]}.jpg").write_bytes(b"not a jpeg")
    proc = run_script(["preprocess_pets.py", "--src_path", str(root), "--bin_path", "b2"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and f"{entries[2][0]}.jpg" in proc.stderr
    assert not (tmp_path / "b2").exists()
    proc = run_script(["preprocess_pets.py", "--src_path", str(root), "--bin_path", "b3", "--label_path", "l3.txt",
                       "--no_pic", "--skip_bad"], cwd=tmp_path)
    assert "skipped 1 unreadable images" in proc.stdout and len(os.listdir(tmp_path / "b3")) == 5
    assert [ln.split()[1] for ln in (tmp_path / "l3.txt").read_text().splitlines()] == ["0", "0", "5", "36", "36"]


def test_help(tmp_path):
    out = run_script(["preprocess_pets.py", "--help"], cwd=tmp_path).stdout
    assert "usage:" in out and "--skip_bad" in out and "--split" in out and "--profile" in out


def test_profile_flag_takes_the_pet_profiles_only(tmp_path):
    """--profile as every script takes it; the defaults are the profile's (here: a folder that does not exist)."""
    proc = run_script(["preprocess_pets.py", "--profile", "ms-resnet50-0.65x-pets"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "oxford-iiit-pet/annotations/test.txt: no such split file" in proc.stderr
    proc = run_script(["preprocess_pets.py", "--profile", "mmcls-resnet50-cifar100"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr  # a CIFAR profile: preprocess_cifar100.py
