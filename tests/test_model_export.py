"""The mmcls-compatible model, checkpoint loading, export_onnx.py and the demo checkpoint."""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import MEAN_STD, ROOT, CodeRunningPayload, run_script

from poc.export import mmdeploy_available, random_model
from poc.formats import cifar
from poc.models.mmcls_resnet import ImageClassifier, build_model
from poc.shared.errors import InputError

KEYS_FIXTURE = ROOT / "tests" / "fixtures" / "mmcls_resnet50_cifar100_keys.txt"


def mmcls_keys():
    out = {}
    for line in KEYS_FIXTURE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split()
            out[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split(","))
    return out


def save_mmcls_checkpoint(path, model, meta=None, prefix=""):
    torch.save({"meta": meta or {"CLASSES": [f"c{i}" for i in range(100)], "epoch": 200},
                "state_dict": {prefix + k: v for k, v in model.state_dict().items()}}, path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One random-weight checkpoint in the mmcls layout, exported once for the graph tests."""
    d = tmp_path_factory.mktemp("export")
    model = random_model(100, seed=3)
    ckpt = save_mmcls_checkpoint(d / "ckpt.pth", model)
    proc = run_script(["export_onnx.py", "--checkpoint", str(ckpt), "--work-dir", str(d / "models")], cwd=d)
    return d / "models" / "end2end.onnx", model, proc


def test_state_dict_keys_match_mmcls_listing():
    want = mmcls_keys()
    assert len(want) == 320
    got = {k: tuple(v.shape) for k, v in ImageClassifier(100).state_dict().items()}
    assert got == want


def test_parameter_count():
    n = sum(p.numel() for p in ImageClassifier(100).parameters())
    assert round(n / 1e6, 2) == 23.71


def test_strict_load_of_mmcls_layout_and_prefixes(tmp_path):
    model = random_model(100, seed=1)
    for prefix in ("", "module."):
        path = save_mmcls_checkpoint(tmp_path / f"c{prefix}.pth", model, prefix=prefix)
        loaded, meta = build_model(path, log=lambda *_: None)
        assert meta["epoch"] == 200
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v)
    torch.save(model.state_dict(), tmp_path / "bare.pth")  # a bare state dict
    loaded, _ = build_model(tmp_path / "bare.pth", log=lambda *_: None)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))


def test_num_classes_from_checkpoint(tmp_path):
    path = save_mmcls_checkpoint(tmp_path / "c10.pth", random_model(10, seed=0))
    model, _ = build_model(path, log=lambda *_: None)
    assert model.head.fc.out_features == 10


def test_bad_checkpoints(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(InputError, match="expected a dict of weights, found list"):
        build_model(tmp_path / "list.pth")
    sd = random_model(100, seed=0).state_dict()
    wrong = dict(sd, **{"backbone.conv1.weight": torch.zeros(64, 3, 5, 5)})
    torch.save({"state_dict": wrong}, tmp_path / "shape.pth")
    with pytest.raises(InputError, match=r"1 shape mismatches: backbone.conv1.weight \[64, 3, 5, 5\] != \[64, 3, 3, 3\]"):
        build_model(tmp_path / "shape.pth")
    missing = {k: v for k, v in sd.items() if "layer4" not in k}
    torch.save({"state_dict": missing}, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"\d+ missing keys: backbone.layer4.0.bn1.bias, .* \(\+\d+ more\)"):
        build_model(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint|refused"):
        build_model(tmp_path / "junk.pth")


def test_code_running_checkpoint_refused_without_running(tmp_path):
    target = tmp_path / "pwned"
    torch.save({"state_dict": {}, "meta": CodeRunningPayload(str(target))}, tmp_path / "evil.pth")
    assert not target.exists()
    proc = run_script(["export_onnx.py", "--checkpoint", str(tmp_path / "evil.pth"), "--work-dir", "m"],
                      cwd=tmp_path, check=False)
    assert proc.returncode == 2 and not target.exists()
    assert "refused by weights-only loading" in proc.stderr and "--trust_checkpoint" in proc.stderr
    assert not (tmp_path / "m" / "end2end.onnx").exists()


def test_trust_checkpoint_loads_numpy_meta(tmp_path):
    model = random_model(100, seed=2)
    path = save_mmcls_checkpoint(tmp_path / "np.pth", model, meta={"best_acc": np.float64(79.9)})
    with pytest.raises(InputError, match="--trust_checkpoint"):
        build_model(path)
    said = []
    loaded, meta = build_model(path, trust=True, log=said.append)
    assert "weights_only=False" in said[0]
    assert torch.equal(loaded.state_dict()["head.fc.weight"], model.state_dict()["head.fc.weight"])


def test_export_graph_contract(exported):
    path, model, proc = exported
    m = onnx.load(str(path))
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [11]
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["output"]
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert [d.dim_param or d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim] == ["batch", 100]
    ops = {n.op_type for n in m.graph.node}
    assert "BatchNormalization" not in ops and {"Conv", "Gemm", "Softmax", "GlobalAveragePool"} <= ops
    assert sum(n.op_type == "Conv" for n in m.graph.node) == 53
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["mean_rgb_255"]) == [129.304, 124.070, 112.434]
    assert json.loads(meta["std_rgb_255"]) == [68.170, 65.392, 70.418]
    assert meta["num_classes"] == "100" and meta["source_checkpoint"].endswith("ckpt.pth")
    assert "parity ONNX Runtime vs PyTorch" in proc.stdout


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (24, 3, 32, 32), (7, 3, 32, 32), (2, 3, 48, 40)])
def test_export_dynamic_dims_and_parity(exported, shape):
    path, model, _ = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = session.run(None, {"input": x})[0]
    assert got.shape == (shape[0], 100)
    assert np.allclose(got.sum(1), 1, atol=1e-5)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-4


def test_export_needs_a_checkpoint_or_explicit_random_init(tmp_path):
    proc = run_script(["export_onnx.py", "--work-dir", "m"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no checkpoint given" in proc.stderr
    proc = run_script(["export_onnx.py", "--random_init", "--work-dir", "m"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--seed" in proc.stderr
    run_script(["export_onnx.py", "--random_init", "--seed", "5", "--num_classes", "10", "--work-dir", "m",
                "--quiet"], cwd=tmp_path)
    m = onnx.load(str(tmp_path / "m" / "end2end.onnx"))
    assert m.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 10


def test_forced_mmdeploy_without_it_is_a_clear_error(tmp_path):
    if mmdeploy_available():
        pytest.skip("mmdeploy is installed here")
    proc = run_script(["export_onnx.py", "--random_init", "--seed", "1", "--exporter", "mmdeploy"], cwd=tmp_path,
                      check=False)
    assert proc.returncode == 1 and "pip install -r requirements-mmdeploy.txt" in proc.stderr
    assert not (tmp_path / "models" / "end2end.onnx").exists()


def test_parity_failure_removes_file(tmp_path, monkeypatch):
    from poc import export
    real = export.torch_outputs
    monkeypatch.setattr(export, "torch_outputs", lambda model, x: real(model, x) + 0.5)
    with pytest.raises(export.ExportError, match="differ by 5.00e-01"):
        export.export_onnx(random_model(10, 0), tmp_path / "end2end.onnx", "x", log=lambda *_: None)
    assert list(tmp_path.iterdir()) == []


MMDEPLOY_REQUIRED = os.environ.get("POC_REQUIRE_MMDEPLOY") == "1"  # set by `make test-mmdeploy`: never skip there


@pytest.mark.skipif(not mmdeploy_available() and not MMDEPLOY_REQUIRED,
                    reason="mmdeploy + mmpretrain not importable here; `make test-mmdeploy` runs this in their venv")
def test_mmdeploy_and_native_exporters_write_the_same_graph(tmp_path):
    model = random_model(100, seed=4)
    ckpt = save_mmcls_checkpoint(tmp_path / "c.pth", model)
    for exporter in ("native", "mmdeploy"):
        proc = run_script(["export_onnx.py", "--checkpoint", str(ckpt), "--exporter", exporter, "--work-dir", exporter],
                          cwd=tmp_path)
        assert f"exporter: {exporter}" in proc.stdout
    a, b = (onnx.load(str(tmp_path / e / "end2end.onnx")) for e in ("native", "mmdeploy"))
    assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
    assert len(a.graph.node) == 122 and [n.op_type for n in a.graph.node].count("Flatten") == 1
    assert sorted(i.raw_data for i in a.graph.initializer) == sorted(i.raw_data for i in b.graph.initializer)
    assert len(a.graph.initializer) == 108
    assert [o.version for o in a.opset_import if o.domain in ("", "ai.onnx")] == \
        [o.version for o in b.opset_import if o.domain in ("", "ai.onnx")] == [11]
    for g in (a.graph, b.graph):  # names and dynamic axes of the contract
        assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["output"]
        dims = [d.dim_param or d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
        assert isinstance(dims[0], str) and dims[1] == 3 and isinstance(dims[2], str) and isinstance(dims[3], str)
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    outs = [ort.InferenceSession(str(tmp_path / e / "end2end.onnx"), providers=["CPUExecutionProvider"])
            .run(None, {"input": x})[0] for e in ("native", "mmdeploy")]
    assert outs[0].shape == (3, 100) and np.abs(outs[0] - outs[1]).max() <= 1e-6
    assert not [p for p in (tmp_path / "mmdeploy").iterdir() if p.name.startswith(".")]  # no stray files


@pytest.mark.skipif(not mmdeploy_available() and not MMDEPLOY_REQUIRED, reason="mmdeploy not importable here")
def test_mmdeploy_export_of_a_checkpoint_that_needs_trust(tmp_path):
    model = random_model(10, seed=2)
    torch.save({"meta": {"np": np.float64(1.0)}, "state_dict": model.state_dict()}, tmp_path / "c.pth")
    proc = run_script(["export_onnx.py", "--checkpoint", "c.pth", "--exporter", "mmdeploy"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--trust_checkpoint" in proc.stderr
    run_script(["export_onnx.py", "--checkpoint", "c.pth", "--exporter", "mmdeploy", "--trust_checkpoint", "--quiet"],
               cwd=tmp_path)
    assert (tmp_path / "models" / "end2end.onnx").is_file()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["end2end.onnx"]


def test_demo_checkpoint_classifies_demo_data(demo_data, demo_workdir):
    """The session's demo checkpoint (make_demo_model on the small demo set, seed 0): what it reported is what it
    does, far above chance, and it loads weights-only."""
    acc = float((demo_workdir / "demo_fp32_top1.txt").read_text())
    assert acc > 30.0  # chance is 1 %
    model, meta = build_model(demo_workdir / "models" / "demo.pth", log=lambda *_: None)  # loads weights-only
    assert meta["source"] == "poc.demo_model" and len(meta["CLASSES"]) == 100
    test = cifar.load_split(demo_data / "test")
    from poc.shared.bins import normalise
    with torch.no_grad():
        probs = model(torch.from_numpy(normalise(test.chw(), *MEAN_STD))).numpy()
    assert abs((probs.argmax(1) == test.labels).mean() * 100 - acc) < 1e-6
    residual_gammas = [v for k, v in model.state_dict().items() if k.endswith("bn3.weight")]
    assert len(residual_gammas) == 16 and all(torch.all(g == 0.2) for g in residual_gammas)


@pytest.mark.parametrize("args", [["export_onnx.py", "--help"]])
def test_export_help(args, tmp_path):
    out = run_script(args, cwd=tmp_path).stdout
    assert "--checkpoint" in out and "--work-dir" in out and "--trust_checkpoint" in out



def test_demo_checkpoint_reused_only_for_its_own_data(demo_data, demo_workdir, tmp_path):
    from poc.demo.datasets import write_demo_dataset
    from poc.demo.weights import is_up_to_date
    ckpt = demo_workdir / "models" / "demo.pth"
    assert is_up_to_date(demo_data, ckpt)
    other = write_demo_dataset(tmp_path / "other", 1, 1, seed=9, log=lambda *_: None)
    assert not is_up_to_date(other, ckpt)
    assert not is_up_to_date(demo_data, tmp_path / "missing.pth")
    import subprocess
    import sys
    before = ckpt.stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-m", "poc.demo_model", "--data", str(demo_data), "--out", str(ckpt),
                           "--if_stale"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "is up to date" in proc.stdout and ckpt.stat().st_mtime_ns == before


def test_a_saved_checkpoint_is_the_same_bytes_every_time(tmp_path):
    """torch.save names its archive after the file it writes: written under a temporary name, the same weights gave
    other bytes each run. Now the temporary has the final name (in a scratch folder), and nothing else is left."""
    import hashlib

    from poc.formats.pth import save_checkpoint
    model = random_model(10, 0)
    digests = set()
    for _ in range(2):
        save_checkpoint(model, tmp_path / "demo.pth", {"seed": 0})
        digests.add(hashlib.sha256((tmp_path / "demo.pth").read_bytes()).hexdigest())
    assert len(digests) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["demo.pth"]
    import zipfile
    with zipfile.ZipFile(tmp_path / "demo.pth") as archive:  # the archive's folder: the file's name, no PID in it
        assert {name.split("/")[0] for name in archive.namelist()} == {"demo"}
