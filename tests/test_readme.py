"""The README, literally: every walk-through runs as written, in a fresh clone of the repository."""
import json
import os
import re

from conftest import ROOT


def _readme_commands(start: str, end: str) -> str:
    """The bash blocks of the README between two headings, as one script; `make ...` lines are the make targets'
    own business (and the mmdeploy venv's command runs in test-mmdeploy)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(start):readme.index(end)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    lines = [ln for block in blocks for ln in block.splitlines()
             if not ln.strip().startswith(("make ", ".venv-mmdeploy/"))]
    return "set -euo pipefail\n" + "\n".join(lines) + "\n"


def _fresh_clone(tmp_path):
    """A clone of the repository with this checkout's uncommitted work, and the venv."""
    import shutil
    import subprocess
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    for path in subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.split():
        if (ROOT / path).is_file():  # uncommitted work, when the test runs before a commit
            (clone / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / path, clone / path)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    # the commands stay literal; the configs they read calibrate on 2 batches instead of 8 (the suite's time)
    for cfg in [clone / "quant.cfg", *clone.glob("profiles/*/quant.cfg")]:
        cfg.write_text(cfg.read_text().replace("batch_num: 8", "batch_num: 2"))
    return clone


def _run_in(clone, script):
    import subprocess
    proc = subprocess.run(["bash", "-c", script], cwd=clone, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_readme_stage_walkthrough_runs_literally(demo_data, demo_workdir, tmp_path):
    """Every command of the README's stage walk-through, as written, in a fresh copy of the repository. `make demo`
    is stood in for by what it leaves behind (the demo data set and the demo checkpoint, small here). Stage 8's
    commands (`benchmark.sh`, 100 timed runs of five models at its ModelZoo defaults) take minutes: they run the
    same code with fewer runs in test_cpu_benchmark_table_json_e2e_and_sweep_plot; the mmdeploy venv's export runs
    in `make test-mmdeploy`."""
    import shutil
    script = _readme_commands("## Stages", "### 8. Benchmark")
    assert "python3 preprocess_cifar100.py" in script and "python3 postprocess.py" in script
    clone = _fresh_clone(tmp_path)
    shutil.copytree(demo_data, clone / "demo-data" / "cifar-100-python")
    (clone / "models").mkdir()
    shutil.copy(demo_workdir / "models" / "demo.pth", clone / "models" / "demo_resnet50_cifar100.pth")
    _run_in(clone, script)
    result = json.loads((clone / "result.json").read_text())
    assert result["value"][0] == {"key": "Number of images", "value": str(len(os.listdir(clone / "bin_data")))}
    assert (clone / "models" / "resnet50_bf16_bs24.xml").is_file()  # the engine example
    assert sorted(os.listdir(clone / "dst2")) == ["device0", "device0_summary.json", "device1", "device1_summary.json"]
