"""Profiles: one toolkit, several models. The default profile changes nothing; a profile's configs equal its
statistics; the shortcut-free ResNet-50 on CIFAR-10 runs the whole flow from its .ms file."""
import json
import os
import shutil

import numpy as np
import pytest
from conftest import ROOT, run_script, write_cifar100

from poc import cifar, profiles
from poc.aipp import parse_aipp
from poc.quant_cfg import parse_quant_cfg

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
    assert p.input_shape == "input:24,3,32,32" and p.names()["COMPILED_INT8"].endswith("_quant_bs24")
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
    from poc.files import spread_sample
    idx = spread_sample(train.labels, 24, 0)
    p = profiles.get(PLAIN)
    want = (train.chw(idx).astype(np.float64) - np.reshape(p.mean_rgb_255, (1, 3, 1, 1))) \
        / np.reshape(p.std_rgb_255, (1, 3, 1, 1))
    assert np.allclose(batch, want, atol=1e-4)


def test_export_for_the_plain_profile_needs_its_ms(tmp_path):
    proc = run_script(["export_onnx.py", "--profile", PLAIN], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--model FILE.ms" in proc.stderr
    assert "residual_distill_res50_cifar10_bs_1_update.ms" in proc.stderr


def test_plain_profile_end_to_end_on_a_tiny_set(tmp_path):
    """The whole flow for the CIFAR-10 profile: demo set, a demo plain ResNet-50 written as .ms and imported back
    through the reader, quantize, compile with the profile's AIPP, infer, score, summary with the published
    figure beside ours."""
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    data = tmp_path / "c10"
    subprocess.run([sys.executable, "-m", "poc.sample", "--profile", PLAIN, "--out", str(data), "--train_per_class",
                    "20", "--test_per_class", "5", "--quiet"], check=True, env=env)
    subprocess.run([sys.executable, "-m", "poc.demo_model", "--profile", PLAIN, "--data", str(data), "--out",
                    str(tmp_path / "demo.ms"), "--max_train", "200", "--bn_images", "64", "--quiet"], check=True,
                   env=env, cwd=tmp_path)
    assert (tmp_path / "demo.ms").read_bytes()[4:8] == b"MSL1"
    proc = run_script(["pipeline.sh", "--profile", PLAIN, "--data", str(data), "--checkpoint", str(tmp_path / "demo.ms"),
                       "--quiet"], cwd=tmp_path)
    assert "profile: ms-resnet50-plain-cifar10" in proc.stdout
    assert "published top-1: FP32 (MindSpore Lite, model card) 94.46 %" in proc.stdout
    work = tmp_path / PLAIN  # every file of the profile in its own folder; none of the default profile's
    result = json.loads((work / "result.json").read_text())
    assert result["value"][:2] == [{"key": "Number of images", "value": "50"}, {"key": "Number of classes", "value": "10"}]
    assert (work / "models" / "resnet50_plain_cifar10_quant_bs24.onnx").is_file() and (work / "dst" / "img0_0.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c10", "demo.ms", "demo.ms.json", PLAIN])
    fp32 = json.loads((work / "result_fp32.json").read_text())["metrics"]["top1"]
    assert fp32 > 30.0  # chance is 10 %
