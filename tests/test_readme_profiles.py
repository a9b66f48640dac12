"""The MindSpore profiles' README walk-throughs, literally, in a fresh clone (the plain ResNet's here, the Pet one's in
test_readme_profile_pets.py: the test workers take a file each, and these are the longest)."""
import json
import os

import pytest
from PIL import Image
from test_readme import _fresh_clone, _readme_commands, _run_in


@pytest.mark.slow
def test_readme_plain_resnet_walkthrough_runs_literally(tmp_path):
    walkthrough(tmp_path, "ms-resnet50-plain-cifar10", "### ResNet-50 without shortcuts",
                "### ResNet50-0.65x on Oxford-IIIT Pet")


def walkthrough(tmp_path, profile_name, start, end):
    """Each MindSpore profile's README commands, as written, in a fresh clone; `make demo PROFILE=...` stood in for
    by what it leaves behind: a small demo set and the demo weights, in the profile's own folder. Then the pipeline
    on the same files from the compile stage on (the whole flow of the profile, without redoing its first stages)."""
    import subprocess
    import sys

    from poc import profiles
    profile = profiles.get(profile_name)
    activate = "source .venv/bin/activate"  # the README's "first once" step, which these sections follow
    assert activate in _readme_commands("## Stages", "### 1. Preprocess")
    script = _readme_commands(start, end).replace("set -euo pipefail\n", f"set -euo pipefail\n{activate}\n", 1)
    clone = _fresh_clone(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(clone))
    small = ["--train_per_class", "6", "--test_per_class", "1"] if profile.dataset == "pets" else \
        ["--train_per_class", "20", "--test_per_class", "3"]
    subprocess.run([sys.executable, "-m", "poc.sample", "--profile", profile_name, *small, "--quiet"], cwd=clone,
                   env=env, check=True)
    subprocess.run([sys.executable, "-m", "poc.demo_model", "--profile", profile_name, "--data", profile.demo_data_dir,
                    "--max_train", "222", "--bn_images", "32", "--quiet"], cwd=clone, env=env, check=True)
    assert (clone / profile.demo_checkpoint).is_file()
    _run_in(clone, script)
    work = clone / profile_name
    result = json.loads((work / "result.json").read_text())
    assert result["value"][1] == {"key": "Number of classes", "value": str(profile.num_classes)}
    assert result["value"][0] == {"key": "Number of images", "value": str(len(os.listdir(work / "bin_data")))}
    assert not (clone / "bin_data").exists() and not (clone / "result.json").exists()  # the default's stay untouched
    # then the pipeline from its compile stage on, over what the walk-through wrote (the README's data link, the demo
    # weights): both precisions, the report, and the summary with the published figure beside ours
    proc = _run_in(clone, f"{activate}\nbash pipeline.sh --profile {profile_name} --checkpoint "
                          f"{profile.demo_checkpoint} --from compile --quiet\n")
    what, top1 = next(iter(profile.published.items()))
    assert f"profile: {profile_name}" in proc.stdout and f"published top-1: {what} {top1:.2f} %" in proc.stdout
    fp32 = json.loads((work / "result_fp32.json").read_text())["metrics"]["top1"]
    assert fp32 > 2 * 100 / profile.num_classes, fp32  # the demo weights: well above chance
    assert "INT8 vs FP32</h2>" in (work / "report.html").read_text()
    if profile.weights == "ms":  # the demo .ms as the Lite 1.1 converter writes it
        assert (clone / profile.demo_checkpoint).read_bytes()[4:8] == b"MSL1"
    else:  # the demo .ckpt in MindSpore's layout, and the Pet images through MindSpore's resize arithmetic
        from test_pets import _rule

        from poc.formats.ms_ckpt import read_ckpt
        ck = read_ckpt(clone / profile.demo_checkpoint)
        assert len(ck.params) == 267 and ck.params["layer1.0.conv3.weight"].shape == (167, 42, 1, 1)
        with Image.open(clone / profile.demo_data_dir / "images" / "Abyssinian_7.jpg") as img:  # 320x465: 256x371
            assert img.size == (320, 465) and (work / "bin_data" / "img0.bin").read_bytes() == _rule(img).tobytes()
