"""Profiles: one toolkit, several models. The default profile changes nothing; a profile's configs equal its
statistics; the shortcut-free ResNet-50 on CIFAR-10 runs the whole flow from its .ms file."""
import os
import shutil

import numpy as np
import pytest
from conftest import ROOT, run_script, write_cifar100

from poc import profiles
from poc.formats import cifar
from poc.formats.aipp import parse_aipp
from poc.formats.quant_cfg import parse_quant_cfg

PLAIN = "ms-resnet50-plain-cifar10"


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_each_profiles_aipp_conf_is_its_normalisation(name):
    p = profiles.get(name)
    a = parse_aipp(p.aipp_conf)
    assert (a.src_h, a.src_w, a.crop, a.swap_rb) == (p.image_hw, p.image_hw, None, False)
    assert np.allclose(np.float64(a.mean) + a.min, p.mean_rgb_255, atol=1e-4)
    assert np.allclose(a.var_reci, [1 / s for s in p.std_rgb_255], rtol=1e-6)
    assert parse_quant_cfg(p.quant_cfg).batch_num >= 1


def test_plain_profile_facts():
    p = profiles.get(PLAIN)
    assert (p.num_classes, p.image_hw, p.weights) == (10, 32, "ms")
    assert p.published == {"FP32 (MindSpore Lite, model card)": 94.46}
    assert np.allclose(np.array(p.mean_rgb_255) / 255, (0.49139968, 0.48215827, 0.44653124))
    assert p.input_shape == "input:24,3,32,32" and p.compiled("int8").endswith("_quant_bs24")
    with pytest.raises(Exception, match="is not one of"):
        profiles.get("no-such-model")


def test_the_default_profile_writes_the_same_files_as_no_profile(tmp_path):
    data = write_cifar100(tmp_path / "cifar-100-python", n_test=30, n_train=48)
    for sub, extra in (("a", []), ("b", ["--profile", profiles.DEFAULT])):
        (tmp_path / sub).mkdir()
        run_script(["preprocess_cifar100.py", "--src_path", str(data / "test"), "--quiet", *extra], cwd=tmp_path / sub)
        run_script(["create_quant_data.py", "--src_path", str(data / "train"), "--batch_num", "2", "--quiet", *extra],
                   cwd=tmp_path / sub)
    for rel in ("img_label.txt", "bin_data/img7.bin", "pic/img3.png", "amct_bin_data/calib_0001.bin"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_cifar10_demo_set_and_profile_defaults(tmp_path):
    import subprocess
    import sys
    subprocess.run([sys.executable, "-m", "poc.sample", "--profile", PLAIN, "--train_per_class", "3",
                    "--test_per_class", "2", "--quiet"], cwd=tmp_path, check=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    folder = tmp_path / "demo-data" / "cifar-10-batches-py"
    assert sorted(os.listdir(folder)) == ["batches.meta", "data_batch_1", "test_batch"]
    split = cifar.load_split(folder / "test_batch")
    assert split.num_classes == 10 and len(split) == 20 and len(cifar.load_class_names(folder / "batches.meta")) == 10
    shutil.copytree(folder, tmp_path / "cifar-10-batches-py")
    run_script(["preprocess_cifar100.py", "--profile", PLAIN, "--quiet"], cwd=tmp_path)  # the profile's test split
    assert len(os.listdir(tmp_path / PLAIN / "bin_data")) == 20  # in the profile's own folder
    assert not (tmp_path / "bin_data").exists()  # the default profile's files are not touched
    # calibration bins normalised with the CIFAR-10 statistics
    run_script(["create_quant_data.py", "--profile", PLAIN, "--batch_num", "1", "--quiet"], cwd=tmp_path)
    batch = np.fromfile(tmp_path / PLAIN / "amct_bin_data" / "calib_0000.bin", "<f4").reshape(24, 3, 32, 32)
    train = cifar.load_split(tmp_path / "cifar-10-batches-py" / "data_batch_1")
    from poc.shared.bins import spread_sample
    idx = spread_sample(train.labels, 24, 0)
    p = profiles.get(PLAIN)
    want = (train.chw(idx).astype(np.float64) - np.reshape(p.mean_rgb_255, (1, 3, 1, 1))) \
        / np.reshape(p.std_rgb_255, (1, 3, 1, 1))
    assert np.allclose(batch, want, atol=1e-4)


def test_export_for_the_plain_profile_needs_its_ms(tmp_path):
    proc = run_script(["export_onnx.py", "--profile", PLAIN], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--model FILE.ms" in proc.stderr
    assert "residual_distill_res50_cifar10_bs_1_update.ms" in proc.stderr


