"""Stage 1 (preprocess) and stage 2 (calibration data), and the safe CIFAR readers."""
import os
import pickle
import re

import numpy as np
import pytest
from conftest import MEAN_STD, ROOT, CodeRunningPayload, dump_pickle, run_script, write_cifar100
from PIL import Image

from poc.formats import cifar
from poc.shared.bins import normalise, spread_sample
from poc.shared.errors import InputError
from poc.shared.progress import Log


def _pickle_rows(path):
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")  # our own test file: a plain load is fine here
    return d[b"data"], d[b"fine_labels"] if b"fine_labels" in d else d[b"labels"]


def test_preprocess_bins_labels_pngs_byte_exact(cifar100, tmp_path):
    run_script(["preprocess_cifar100.py", "--src_path", str(cifar100 / "test"), "--quiet"], cwd=tmp_path)
    data, labels = _pickle_rows(cifar100 / "test")
    bins = sorted(os.listdir(tmp_path / "bin_data"))
    assert len(bins) == 50
    for i in (0, 7, 49):
        raw = (tmp_path / "bin_data" / f"img{i}.bin").read_bytes()
        assert len(raw) == 3072
        hwc = data[i].reshape(3, 32, 32).transpose(1, 2, 0)
        assert raw == hwc.tobytes()
        png = np.asarray(Image.open(tmp_path / "pic" / f"img{i}.png"))
        assert png.shape == (32, 32, 3) and np.array_equal(png, hwc)
    lines = (tmp_path / "img_label.txt").read_text().splitlines()
    assert lines == [f"img{i} {labels[i]}" for i in range(50)]
    # the class names from the meta beside the split, in class-index order
    assert (tmp_path / "class_names.txt").read_text().splitlines() == [f"class{i}" for i in range(100)]


def test_preprocess_class_names_meta_checked(tmp_path):
    from poc.preprocess import preprocess
    folder = write_cifar100(tmp_path / "c", n_test=5)
    cifar.write_meta(folder / "meta", ["a", "b"], ["s"])  # 2 names for a 100-class split
    with pytest.raises(InputError, match="2 class names for the 100 classes"):
        preprocess(cifar.open_split(folder / "test"), tmp_path / "b", tmp_path / "l.txt", log=Log(quiet=True))
    cifar.write_meta(folder / "meta", ["one\ntwo", *map(str, range(99))], ["s"])
    with pytest.raises(InputError, match="one non-empty line"):
        preprocess(cifar.open_split(folder / "test"), tmp_path / "b", tmp_path / "l.txt", log=Log(quiet=True))
    assert not (tmp_path / "b").exists() and not (tmp_path / "l.txt").exists()
    (folder / "meta").unlink()  # no meta: the bins and labels, no names
    preprocess(cifar.open_split(folder / "test"), tmp_path / "b", tmp_path / "l.txt", log=Log(quiet=True))
    assert (tmp_path / "l.txt").is_file() and not (tmp_path / "class_names.txt").exists()


def test_preprocess_limit_not_multiple_of_24_and_no_pic(cifar100, tmp_path):
    run_script(["preprocess_cifar100.py", "--src_path", str(cifar100 / "test"), "--bin_path", "b",
                "--label_path", "l.txt", "--no_pic", "--limit", "25", "--quiet"], cwd=tmp_path)
    assert sorted(os.listdir(tmp_path / "b")) == sorted(f"img{i}.bin" for i in range(25))
    assert len((tmp_path / "l.txt").read_text().splitlines()) == 25
    assert not (tmp_path / "pic").exists()


def test_preprocess_rerun_smaller_leaves_no_stale_files(cifar100, tmp_path):
    run_script(["preprocess_cifar100.py", "--src_path", str(cifar100 / "test"), "--quiet"], cwd=tmp_path)
    run_script(["preprocess_cifar100.py", "--src_path", str(cifar100 / "test"), "--limit", "10", "--quiet"],
               cwd=tmp_path)
    assert sorted(os.listdir(tmp_path / "bin_data")) == sorted(f"img{i}.bin" for i in range(10))
    assert len(os.listdir(tmp_path / "pic")) == 10
    assert len((tmp_path / "img_label.txt").read_text().splitlines()) == 10
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporaries left


def test_preprocess_failure_keeps_previous_outputs(cifar100, tmp_path):
    run_script(["preprocess_cifar100.py", "--src_path", str(cifar100 / "test"), "--limit", "5", "--quiet"],
               cwd=tmp_path)
    before = (tmp_path / "bin_data" / "img0.bin").read_bytes()
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x80\x02}q\x00(X")  # truncated pickle
    proc = run_script(["preprocess_cifar100.py", "--src_path", str(bad)], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert sorted(os.listdir(tmp_path / "bin_data")) == sorted(f"img{i}.bin" for i in range(5))
    assert (tmp_path / "bin_data" / "img0.bin").read_bytes() == before


def test_preprocess_failure_midway_leaves_old_set_whole(cifar100, tmp_path, monkeypatch):
    """A crash while writing (here: the 3rd PNG) leaves the previous outputs exactly as they were."""
    from poc import preprocess as pre
    pre.preprocess(cifar.open_split(cifar100 / "test"), tmp_path / "bin_data", tmp_path / "l.txt", tmp_path / "pic", limit=4,
                   log=pre.Log(True))
    calls = {"n": 0}
    real_save = Image.Image.save

    def failing_save(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_save(self, *a, **k)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError):
        pre.preprocess(cifar.open_split(cifar100 / "test"), tmp_path / "bin_data", tmp_path / "l.txt", tmp_path / "pic",
                       log=pre.Log(True))
    assert sorted(os.listdir(tmp_path / "bin_data")) == sorted(f"img{i}.bin" for i in range(4))
    assert len((tmp_path / "l.txt").read_text().splitlines()) == 4
    assert sorted(os.listdir(tmp_path)) == ["bin_data", "cifar-100-python", "class_names.txt", "l.txt", "pic"]


def test_cifar10_input(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, (30, 3072), dtype=np.uint8)
    labels = list(rng.integers(0, 10, 30))
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    dump_pickle(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": labels,
                                         b"data": data, b"filenames": [b"x.png"] * 30})
    dump_pickle(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    split = cifar.load_split(folder / "test_batch")
    assert split.num_classes == 10 and len(split) == 30
    assert cifar.load_class_names(folder / "batches.meta")[3] == "c3"
    run_script(["preprocess_cifar100.py", "--src_path", str(folder / "test_batch"), "--no_pic", "--quiet"],
               cwd=tmp_path)
    assert (tmp_path / "bin_data" / "img29.bin").read_bytes() == data[29].reshape(3, 32, 32).transpose(1, 2, 0).tobytes()
    assert (tmp_path / "img_label.txt").read_text().splitlines()[29] == f"img29 {labels[29]}"


def test_malicious_pickle_refused_and_not_run(tmp_path):
    target = tmp_path / "pwned"
    evil = dump_pickle(tmp_path / "test", {b"data": CodeRunningPayload(str(target)), b"fine_labels": [0]})
    with pytest.raises(InputError, match="refused to load global '(io|builtins).open'"):
        cifar.load_split(evil)
    assert not target.exists()
    proc = run_script(["preprocess_cifar100.py", "--src_path", str(evil)], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and not target.exists()
    assert proc.stderr.strip().count("\n") == 0 and str(evil) in proc.stderr


@pytest.mark.parametrize("obj, problem", [
    ([1, 2, 3], "expected a dict, found list"),
    ({b"fine_labels": [0]}, "missing key b'data'"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "missing key b'fine_labels'"),
    ({b"data": np.zeros((2, 3072), np.float32), b"fine_labels": [0, 1]}, "dtype float32, expected uint8"),
    ({b"data": np.zeros((2, 3000), np.uint8), b"fine_labels": [0, 1]}, r"shape \[2, 3000\], expected \[N, 3072\]"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 100]}, "label 100 of image 1 is outside 0..99"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0]}, "2 images but 1 labels"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "outside 0..9"),
])
def test_bad_pickles_one_line_exit_2(tmp_path, obj, problem):
    bad = dump_pickle(tmp_path / "test", obj)
    with pytest.raises(InputError, match=problem):
        cifar.load_split(bad)
    proc = run_script(["preprocess_cifar100.py", "--src_path", str(bad)], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert re.fullmatch(rf"error: {re.escape(str(bad))}: .*{problem}.*\n", proc.stderr)
    assert not (tmp_path / "bin_data").exists() and not (tmp_path / "img_label.txt").exists()


def test_truncated_and_missing_pickle(cifar100, tmp_path):
    whole = (cifar100 / "test").read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        cifar.load_split(cut)
    with pytest.raises(InputError, match="no such CIFAR pickle file"):
        cifar.load_split(tmp_path / "nope")


def test_real_cifar_protocol_with_numpy_reconstruct(tmp_path):
    """The real files pickle the data array through numpy's _reconstruct: allowed."""
    data = np.arange(3072 * 2, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    path = dump_pickle(tmp_path / "test", {b"data": data, b"fine_labels": [5, 6]}, protocol=2)
    assert b"_reconstruct" in path.read_bytes()
    split = cifar.load_split(path)
    assert np.array_equal(split.images, data) and list(split.labels) == [5, 6]


# --- calibration data -----------------------------------------------------------------------------------

def test_calibration_bins(cifar100, tmp_path):
    run_script(["create_quant_data.py", "--src_path", str(cifar100 / "train"), "--save_path", "calib",
                "--batch_num", "3", "--amct", "--quiet"], cwd=tmp_path)
    names = os.listdir(tmp_path / "calib")
    assert sorted(names) == ["calib_0000.bin", "calib_0001.bin", "calib_0002.bin"]
    split = cifar.load_split(cifar100 / "train")
    expected_idx = spread_sample(split.labels, 72, seed=0)
    seen = []
    for k, name in enumerate(sorted(names)):
        raw = (tmp_path / "calib" / name).read_bytes()
        assert len(raw) == 294912
        batch = np.frombuffer(raw, "<f4").reshape(24, 3, 32, 32)
        # normalisation in RGB order with the DESIGN.md constants, computed independently here
        chw = split.images[expected_idx[k * 24:(k + 1) * 24]].reshape(24, 3, 32, 32).astype(np.float64)
        want = (chw / 255 - np.array([129.304, 124.070, 112.434]).reshape(1, 3, 1, 1) / 255) \
            / (np.array([68.170, 65.392, 70.418]).reshape(1, 3, 1, 1) / 255)
        assert np.allclose(batch, want, atol=1e-5)
        seen.extend(expected_idx[k * 24:(k + 1) * 24])
    assert len(set(seen)) == 72  # distinct images


def test_calibration_sampling_spreads_classes_and_is_deterministic():
    labels = np.repeat(np.arange(100), 5)
    a = spread_sample(labels, 100, seed=4)
    assert len(set(labels[a])) == 100
    assert np.array_equal(a, spread_sample(labels, 100, seed=4))
    assert not np.array_equal(a, spread_sample(labels, 100, seed=5))


def test_calibration_default_batch_num_from_quant_cfg_and_train_default(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python", n_test=30, n_train=24 * 8)
    (tmp_path / "quant.cfg").write_text("batch_num: 2\n")
    proc = run_script(["create_quant_data.py"], cwd=tmp_path)
    assert len(os.listdir(tmp_path / "amct_bin_data")) == 2
    assert "cifar-100-python/train" in proc.stdout


def test_calibration_too_few_images(cifar100, tmp_path):
    proc = run_script(["create_quant_data.py", "--src_path", str(cifar100 / "test"), "--batch_num", "3"],
                      cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "50 images, but 3 batches of 24 distinct images need 72" in proc.stderr
    assert not (tmp_path / "amct_bin_data").exists()


def test_normalise_constants_live_in_config():
    x = np.full((1, 3, 1, 1), 255, np.uint8)
    out = normalise(x, *MEAN_STD).ravel()
    want = [(255 - m) / s for m, s in zip(*MEAN_STD, strict=False)]
    assert np.allclose(out, want, atol=1e-5)


# --- demo data set --------------------------------------------------------------------------------------

def test_demo_dataset_format_and_determinism(tmp_path):
    from poc.demo import datasets
    a = datasets.write_demo_dataset(tmp_path / "a", 2, 1, seed=7, log=lambda *_: None)
    b = datasets.write_demo_dataset(tmp_path / "b", 2, 1, seed=7, log=lambda *_: None)
    for name in ("train", "test", "meta"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    train = cifar.load_split(a / "train")
    assert len(train) == 200 and sorted(set(train.labels.tolist())) == list(range(100))
    with open(a / "test", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    assert set(d) == {b"data", b"fine_labels", b"coarse_labels", b"filenames", b"batch_label"}
    assert len(cifar.load_class_names(a / "meta")) == 100
    # images of one class differ (jitter + noise)
    same = train.images[train.labels == 0]
    assert not np.array_equal(same[0], same[1])


@pytest.mark.parametrize("script", ["preprocess_cifar100.py", "create_quant_data.py"])
def test_help(script, tmp_path):
    proc = run_script([script, "--help"], cwd=tmp_path)
    assert "usage:" in proc.stdout and "--quiet" in proc.stdout


def test_sample_module_help():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "poc.sample", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "--train_per_class" in proc.stdout


def test_demo_dataset_failure_leaves_no_partial_folder(tmp_path, monkeypatch):
    from poc.demo import datasets

    def fail(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(datasets.cifar, "write_meta", fail)
    with pytest.raises(OSError):
        datasets.write_demo_dataset(tmp_path / "demo", 1, 1, log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []  # neither train/test without meta nor a temporary folder
