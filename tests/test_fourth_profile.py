"""Adding a model is a profile row (plus its aipp.conf and quant.cfg, and a model module when the architecture is
new): a throwaway fourth profile, the shortcut-free ResNet-50 under another name on CIFAR-100's 100 classes, runs
every stage through the same command lines as the shipped three, with no code of its own."""
import json
import runpy
import shutil
import sys

import onnx
import pytest
from conftest import ROOT

from poc import profiles

FOURTH = "plain-resnet50-cifar100-throwaway"


def _run(monkeypatch, target: str, *args: str) -> None:
    """A script (``x.py``) or a stage module (``poc.x``) as its command line runs it, here in this process (so that
    it sees the registered profile); it must exit 0."""
    monkeypatch.setattr(sys, "argv", [target, *args])
    with pytest.raises(SystemExit) as ended:
        if target.endswith(".py"):
            runpy.run_path(str(ROOT / target), run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    assert ended.value.code in (0, None), f"{target} {' '.join(args)} exited {ended.value.code}"


@pytest.mark.slow
def test_a_fourth_profile_is_a_row_and_runs_every_stage(tmp_path, monkeypatch):
    configs = tmp_path / "cfg"
    configs.mkdir()
    shutil.copy(ROOT / "aipp.conf", configs / "aipp.conf")  # CIFAR-100's normalisation, as the row says
    (configs / "quant.cfg").write_text((ROOT / "quant.cfg").read_text().replace("batch_num: 8", "batch_num: 1"))
    default = profiles.get(None)
    row = profiles.Profile(
        FOURTH, "a throwaway fourth model", "cifar100", "./data-4", "./demo-data-4", "test", "train", 32, 100,
        default.mean_rgb_255, default.std_rgb_255, "plain_resnet50", "poc.models.plain_resnet", "ms", str(configs),
        "plain100", demo_weights="demo_plain100.ms", workdir="./fourth")
    monkeypatch.setitem(profiles.PROFILES, FOURTH, row)
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "fourth"

    _run(monkeypatch, "poc.sample", "--profile", FOURTH, "--train_per_class", "3", "--test_per_class", "1", "--quiet")
    _run(monkeypatch, "poc.demo_model", "--profile", FOURTH, "--data", "demo-data-4", "--bn_images", "64", "--quiet")
    (tmp_path / "data-4").symlink_to("demo-data-4")
    _run(monkeypatch, "preprocess_cifar100.py", "--profile", FOURTH, "--quiet")
    _run(monkeypatch, "create_quant_data.py", "--profile", FOURTH, "--quiet")
    _run(monkeypatch, "export_onnx.py", "--profile", FOURTH, "--model", row.demo_checkpoint, "--quiet")
    _run(monkeypatch, "poc.quantize", "--profile", FOURTH, "--eval_images", "48", "--quiet")
    _run(monkeypatch, "poc.compile", "--profile", FOURTH, "--quiet")
    _run(monkeypatch, "poc.runner", "--model", str(work / "models" / "plain100_quant_bs24.onnx"), "--input",
         str(work / "bin_data"), "--output", str(work), "--output_dirname", "dst", "--outfmt", "TXT", "--quiet")
    _run(monkeypatch, "postprocess.py", str(work / "dst"), str(work / "img_label.txt"), str(work), "result.json",
         "--quiet")

    # every file in the profile's own folder, under the profile's names, none in the working folder's ModelZoo paths
    assert not (tmp_path / "models").exists() and not (tmp_path / "bin_data").exists()
    assert len(list((work / "bin_data").glob("img*.bin"))) == 100 and len(list((work / "amct_bin_data").iterdir())) == 1
    end2end = onnx.load(str(work / "models" / "end2end.onnx"))
    assert end2end.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 100
    compiled = onnx.load(str(work / "models" / "plain100_quant_bs24.onnx"))
    assert [d.dim_value for d in compiled.graph.input[0].type.tensor_type.shape.dim] == [24, 32, 32, 3]
    report = json.loads((work / "models" / "plain100_quant_quant_report.json").read_text())
    assert report["fidelity"]["images"] == 48
    result = json.loads((work / "result.json").read_text())
    assert result["metrics"]["num_images"] == 100 and result["metrics"]["num_classes"] == 100
    assert len(result["metrics"]["class_names"]) == 100  # the demo set's meta, carried by preprocess
    # the demo weights classify the demo set far above chance (1 %): the recipe ran, not a stub
    assert 10 < result["metrics"]["top1"] <= 100
