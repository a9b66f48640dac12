"""The shared layer: stages import no other stage for a helper, each fact lives once, the runner's and the
benchmark's options are one dataclass, and the AIPP reference is the oracle of the fold."""
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, fake_ais_bench, identity_model, run_script, tiny_model

from poc import config, profiles
from poc.engines.onnxruntime import OnnxRuntimeBackend
from poc.formats.aipp import fold_into_model, parse_aipp

# The tree is the map: poc/ holds the stage fronts (and config and profiles, the facts the layers read); beneath it
# one folder per kind, each kind importing only its own kind and the kinds below it. The order, lowest first (a
# profile names its data set's reader, so profiles sit above the formats):
LAYERS = ("config", "shared", "formats", "profiles", "models", "engines", "int8|accuracy", "perf|demo", "fronts")
FACTS = {"config", "profiles"}
# The only fronts that drive other fronts: the benchmark compiles and runs; make bench times three stages.
FRONTS_DRIVEN = {"benchmark": {"compile", "runner"}, "bench_stages": {"preprocess", "scoring", "report"}}


def _kind(dotted: str) -> str:
    """``poc.formats.cifar`` -> formats; ``poc.config`` -> config; ``poc.runner`` -> fronts."""
    parts = dotted.split(".")
    if len(parts) >= 3:
        return parts[1]
    return parts[1] if parts[1] in FACTS else "fronts"


def _level(kind: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if kind in layer.split("|"))


def _modules() -> dict[str, Path]:
    """{dotted name: file} of every module in poc/."""
    return {".".join(("poc", *p.relative_to(ROOT / "poc").with_suffix("").parts)): p
            for p in (ROOT / "poc").rglob("*.py") if p.name != "__init__.py"}


def _imports(path: Path, modules) -> set[str]:
    """The poc modules a file imports (``from poc.x import y`` where y is a module counts as poc.x.y)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "poc":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("poc."))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: a relative import (the layering reads absolute poc.* imports)")
    return found & set(modules)


def test_every_folder_of_poc_is_a_kind():
    folders = {p.name for p in (ROOT / "poc").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {k for layer in LAYERS[1:-1] for k in layer.split("|")} - FACTS


@pytest.mark.parametrize("module", sorted(_modules()))
def test_each_kind_imports_only_its_own_and_the_kinds_below(module):
    modules = _modules()
    kind = _kind(module)
    for used in _imports(modules[module], modules):
        used_kind = _kind(used)
        if used_kind == "fronts" and kind == "fronts":  # a stage never imports another stage
            assert used.split(".")[-1] in FRONTS_DRIVEN.get(module.split(".")[-1], set()), f"{module} imports {used}"
        else:
            assert used_kind == kind or _level(used_kind) < _level(kind), f"{module} ({kind}) imports {used} ({used_kind})"


def test_the_readme_code_map_is_the_tree():
    """Every module of poc/ is in the README's "Where the code is" table, and everything the table names exists."""
    import re
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Where the code is"):readme.index("## Disk space")]
    named = set(re.findall(r"`(poc/[a-z0-9_/]+\.py)`", table))
    on_disk = {str(p.relative_to(ROOT)) for p in _modules().values()}
    assert named == on_disk, (sorted(on_disk - named), sorted(named - on_disk))


def test_om_path_imports_neither_onnxruntime_nor_torch(tmp_path):
    """An Ascend host may have neither: infer.sh on an .om hands off to ais_bench without importing them."""
    mods = fake_ais_bench(tmp_path, "import sys; print('AIS', sys.argv[1:])\n")["PYTHONPATH"]
    (tmp_path / "m.om").write_bytes(b"om")
    code = ("import sys; sys.modules['onnxruntime'] = None; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
            "from poc.runner import main; sys.exit(main(['--model', 'm.om', '--input', 'x', '--dymBatch', '4']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=f"{ROOT}:{mods}"))
    assert proc.returncode == 0, proc.stderr
    assert "AIS ['--model', 'm.om', '--input', 'x', '--dymBatch', '4']" in proc.stdout


# --- each fact once -----------------------------------------------------------------------------------------

def test_output_names_of_config_are_ignored():
    """Every output name of config, and every other profile's folder, is ignored by git (what `make clean` removes
    is tested by running it, below)."""
    gitignore = (ROOT / ".gitignore").read_text().split()
    names = [p.workdir for p in profiles.PROFILES.values() if p.workdir != "."]
    names += [config.BIN_DIR, config.PIC_DIR, config.LABEL_FILE, config.CALIB_DIR, config.MODELS_DIR, config.DST_INT8,
             config.DST_FP32, config.RESULT_JSON, config.RESULT_FP32_JSON, config.BENCHMARK_JSON, config.BENCHMARK_PNG,
             config.BENCH_DIR, config.DST_INT8 + config.SUMMARY_SUFFIX, config.DST_FP32 + config.SUMMARY_SUFFIX,
             profiles.get(None).demo_data_dir.split("/")[1]]
    for name in names:
        bare = name.removeprefix("./")
        assert f"/{bare}/" in gitignore or f"/{bare}" in gitignore, name
    assert "onnxruntime_profile_*.json" in gitignore


def test_pipeline_spells_no_file_name_itself():
    text = (ROOT / "pipeline.sh").read_text()
    for literal in ("bin_data", "img_label", "amct_bin_data", "resnet50_", "result.json", "end2end.onnx",
                    "input:24,3,32,32", "--output_dirname dst "):
        assert literal not in text, literal
    shell = subprocess.run([sys.executable, "-m", "poc.profiles", "--shell"], cwd=ROOT, capture_output=True, text=True)
    assert "BIN_DIR=./bin_data" in shell.stdout and "INPUT_SHAPE=input:24,3,32,32" in shell.stdout


def test_published_figures_live_in_their_profile_row_only():
    for path in list((ROOT / "poc").rglob("*.py")):
        if path.name != "profiles.py":
            text = path.read_text()
            assert "14290" not in text and "78.55" not in text and "9336" not in text, path.name


def test_compiled_model_is_the_one_written_last(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.om").write_bytes(b"om")
    assert config.compiled_model("m") == tmp_path / "m.om" or str(config.compiled_model("m")) == "m.om"
    time.sleep(0.01)
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    os.utime(tmp_path / "m.om", ns=(1, 1))  # a stale .om from an earlier Ascend run
    assert str(config.compiled_model("m")) == "m.onnx"


def test_benchmark_does_not_prefer_a_stale_om(tmp_path):
    """With a stale .om beside a newer CPU compile, benchmark.sh times the .onnx (no ais_bench hand-off)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "resnet50_quant_bs24.om").write_bytes(b"stale om")
    os.utime(models / "resnet50_quant_bs24.om", ns=(1, 1))
    tiny_model(models / "resnet50_quant_bs24.onnx")
    tiny_model(models / "resnet50_fp32_bs24.onnx")
    proc = run_script(["benchmark.sh", "--loop", "2", "--block", "1", "--warmup_count", "0"], cwd=tmp_path)
    assert "INT8 speed-up over FP32 on the CPU: onnxruntime" in proc.stdout and "ais_bench" not in proc.stdout


# --- runner and benchmark options ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--loop", "0"], "--loop must be at least 1"),
    (["--block", "0"], "--block must be at least 1"),
    (["--batchsize", "0"], "--batchsize must be at least 1"),
])
def test_benchmark_refuses_values_that_hang_or_divide_by_zero(tmp_path, args, message):
    a = tiny_model(tmp_path / "a.onnx")
    proc = subprocess.run(["bash", str(ROOT / "benchmark.sh"), "--model", str(a), "--fp32_model", str(a), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_runner_loop_zero_is_one_line(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    proc = run_script(["infer.sh", "--model", str(model), "--loop", "0"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr == "error: --loop: 0: must be at least 1\n"


def test_batchsize_is_the_batch_of_the_throughput_line(tmp_path):
    """As in ais_bench: --batchsize only sets the batch the throughput is computed with (CPU runner and
    benchmark alike); it is no longer silently dropped."""
    model = tiny_model(tmp_path / "m.onnx")
    proc = run_script(["infer.sh", "--model", str(model), "--loop", "3", "--batchsize", "48", "--output", "o",
                       "--output_dirname", "p"], cwd=tmp_path)
    s = json.loads((tmp_path / "o" / "p_summary.json").read_text())
    assert s["throughput"] == pytest.approx(1000 * 48 / s["NPU_compute_time"]["mean"])
    assert "throughput 1000*batchsize.mean(48)/" in proc.stdout
    proc = run_script(["benchmark.sh", "--model", str(model), "--fp32_model", str(model), "--loop", "2", "--block", "1",
                       "--batchsize", "12"], cwd=tmp_path)
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["cpu"]["int8"]["batch"] == 12 and "--batchsize 12 differs from the model's batch 24" in proc.stdout


def test_benchmark_builds_the_runner_options_it_runs_with(tmp_path):
    """The benchmark drives the runner through RunOptions: the e2e run writes TXT outputs where it says."""
    import dataclasses

    from poc.runner import RunOptions
    assert {f.name for f in dataclasses.fields(RunOptions)} >= {"model", "input", "output", "output_dirname", "outfmt",
                                                                "loop", "warmup_count", "batchsize", "threads"}
    src = (ROOT / "poc" / "benchmark.py").read_text()
    assert "Namespace" not in src and "RunOptions(" in src


# --- AIPP: the numpy reference is the oracle of the ONNX fold ---------------------------------------------------

@pytest.mark.parametrize("crop, swap", [(True, True), (True, False), (False, True)])
def test_aipp_fold_equals_the_reference_with_crop_and_swap(tmp_path, crop, swap):
    conf = tmp_path / "a.conf"
    conf.write_text(f"""aipp_op {{
  aipp_mode: static
  input_format: RGB888_U8
  src_image_size_w: 40
  src_image_size_h: 36
  crop: {str(crop).lower()}
  load_start_pos_w: 5
  load_start_pos_h: 3
  crop_size_w: 32
  crop_size_h: 30
  rbuv_swap_switch: {str(swap).lower()}
  mean_chn_0: 10
  mean_chn_1: 20
  mean_chn_2: 30
  min_chn_0: 0.5
  min_chn_1: 1.5
  min_chn_2: 2.5
  var_reci_chn_0: 0.25
  var_reci_chn_1: 0.5
  var_reci_chn_2: 2.0
}}""")
    aipp = parse_aipp(conf)
    h, w = aipp.out_hw
    folded = fold_into_model(identity_model(h, w), aipp, [4, 3, h, w], "input")
    onnx.save(folded, str(tmp_path / "f.onnx"))
    x = np.random.default_rng(0).integers(0, 256, (4, 36, 40, 3), dtype=np.uint8)
    got = OnnxRuntimeBackend().load(tmp_path / "f.onnx").predict({"input": x})[0]
    want = aipp.apply(x)
    assert got.shape == (4, 3, h, w) and np.allclose(got, want, atol=1e-5)
    # and the reference itself, written out independently for one pixel
    y, xx = 7, 9
    src = x[1, y + (3 if crop else 0), xx + (5 if crop else 0)].astype(np.float64)
    chan = src[::-1] if swap else src
    expect = (chan - [10, 20, 30] - [0.5, 1.5, 2.5]) * [0.25, 0.5, 2.0]
    assert np.allclose(got[1, :, y, xx], expect, atol=1e-4)


# --- quant.cfg: nothing silently ignored -------------------------------------------------------------------------

def test_quant_cfg_fields_the_fallback_cannot_honour_are_logged(tmp_path):
    from poc.formats.quant_cfg import describe, parse_quant_cfg
    p = tmp_path / "q.cfg"
    p.write_text('batch_num: 1\nskip_fusion_layers: "/backbone/conv1/Conv"\n'
                 'common_config { ifmr_quantize { asymmetric: false } }\n')
    cfg = parse_quant_cfg(p)
    assert cfg.activation_offset is False and cfg.asymmetric is False  # asymmetric decides, as in AMCT
    lines = "\n".join(describe(cfg, p))
    assert "skip_fusion_layers (1): not honoured on the CPU" in lines
    assert "activation_offset False (from ifmr_quantize asymmetric)" in lines


def test_make_clean_removes_the_toolkits_outputs_and_nothing_else(tmp_path):
    """Outputs of every profile go; a user's checkpoint in models/, a note in bin_data/, a folder of theirs in dst/
    and anything unknown stay, and so do the folders that still hold them; the README's demo link goes."""
    import subprocess
    import sys

    from poc import config
    ours = ["bin_data/img0.bin", "bin_data/img10.bin", "pic/img0.png", "amct_bin_data/calib_0000.bin",
            "img_label.txt", "class_names.txt", "dst/img0_0.txt", "dst_summary.json", "dst_fp32/img0_0.txt",
            "dst2/device0/img0_0.txt",
            "dst2/device0_summary.json", "result.json", "result_fp32.json", "benchmark.json", "benchmark.png",
            "models/end2end.onnx", "models/resnet50_quant_deploy_model.onnx", "models/resnet50_quant_bs24.onnx",
            "models/resnet50_fp32_bs24.xml", "models/resnet50_fp32_bs24.bin", "models/demo_resnet50_cifar100.pth",
            "bench_out/stages/bin_data/img0.bin", "demo-data/cifar-100-python/test",
            "demo-data/oxford-iiit-pet/images/Abyssinian_1.jpg"]
    for p in profiles.PROFILES.values():
        ours += [f"{p.compiled('int8')}.onnx", p.quant_report,
                 p.path("bin_data/img3.bin"), p.path(config.RESULT_JSON), p.demo_checkpoint]
    theirs = ["models/my_resnet50.pth", "bin_data/notes.md", "dst/mine/a.txt", "train.py", "pic/holiday.jpg",
              "ms-resnet50-0.65x-pets/notes.txt"]
    for rel in ours + theirs:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    os.symlink("demo-data/cifar-100-python", tmp_path / "cifar-100-python")
    proc = subprocess.run([sys.executable, "-m", "poc.clean"], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink())
    assert left == sorted(theirs), left
    assert not (tmp_path / "amct_bin_data").exists() and not (tmp_path / "dst2").exists()  # emptied: removed
    assert not (tmp_path / "ms-resnet50-plain-cifar10").exists()  # a profile's folder too
    assert "anything else here is yours and stays" in proc.stdout


def _with_source(path, source):
    m = onnx.load(str(path))
    m.metadata_props.add(key=config.SOURCE_KEY, value=source)
    onnx.save(m, str(path))
    return path


def test_the_source_of_a_model_travels_from_export_through_quantize_and_compile(demo_workdir, tmp_path):
    """end2end.onnx records the sha256 of the weights it was exported from; the QDQ model, the compiled .onnx and
    the OpenVINO IR carry it on."""
    import hashlib

    from poc.compile import compile_cpu
    from poc.formats.model_file import model_source
    from poc.shared.progress import Log
    want = hashlib.sha256((demo_workdir / "models" / "demo.pth").read_bytes()).hexdigest()
    assert model_source(demo_workdir / "models" / "end2end.onnx") == want
    run_script(["quantize.sh", "--model", str(demo_workdir / "models/end2end.onnx"), "--save_path", "q",
                "--data_dir", str(demo_workdir / "amct_bin_data"), "--calibration_config",
                str(demo_workdir / "quant.cfg"), "--eval_images", "0", "--quiet"], cwd=tmp_path,
               env={"POC_BACKEND": "cpu"})
    assert model_source(tmp_path / "q_deploy_model.onnx") == want
    for engine in ("onnxruntime", "openvino"):
        out = compile_cpu(tmp_path / "q_deploy_model.onnx", tmp_path / f"c_{engine}", "input:24,3,32,32",
                          ROOT / "aipp.conf", log=Log(True), engine=engine)
        assert model_source(out) == want, engine


def test_models_of_two_networks_are_not_combined(tmp_path):
    from poc.formats.model_file import same_source
    a = _with_source(tiny_model(tmp_path / "a.onnx"), "a" * 64)
    b = _with_source(tiny_model(tmp_path / "b.onnx"), "b" * 64)
    same_source({"A": a, "A again": a, "unknown": tiny_model(tmp_path / "c.onnx"), "missing": tmp_path / "none"})
    proc = run_script(["benchmark.sh", "--model", str(a), "--fp32_model", str(b), "--engines", "onnxruntime",
                       "--no_peaks", "--loop", "2"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "b.onnx: --fp32_model was made from other weights (sha256 bbbbbbbbbbbb...) than --model" in proc.stderr
    assert not (tmp_path / "benchmark.json").exists()


def test_the_pipeline_summary_refuses_runs_of_two_networks(tmp_path):
    a = _with_source(tiny_model(tmp_path / "a.onnx"), "a" * 64)
    b = _with_source(tiny_model(tmp_path / "b.onnx"), "b" * 64)
    for dst, model in (("dst", a), ("dst_fp32", b)):
        (tmp_path / f"{dst}_summary.json").write_text(json.dumps({"args": ["infer.sh", "--model", str(model)]}))
    proc = subprocess.run([sys.executable, "-m", "poc.summary"], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2 and "the FP32 run's model was made from other weights" in proc.stderr, proc.stderr
