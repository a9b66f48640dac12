"""compare.sh: msaccucmp's metrics (hand-computed), the per-layer comparison on every profile and both engines,
a corrupted layer named first, the msit hand-off, two output folders compared, and bad input."""
import csv
import importlib
import io
import math
import os

import numpy as np
import onnx
import pytest
from conftest import ROOT, env_with_path, fake_tool, run_script, tool_calls, write_bins
from onnx import TensorProto, helper, numpy_helper

from poc import profiles
from poc.accuracy import metrics
from poc.accuracy.dumps import matched, onnx_tensors

CPU = {"POC_BACKEND": "cpu"}


# --- the metrics, against values worked out by hand ------------------------------------------------------------

def test_metrics_are_msaccucmps():
    target, golden = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0])
    values, reason = metrics.compare(target, golden)
    assert reason == ""
    assert values["CosineSimilarity"] == f"{34 / math.sqrt(30 * 39):.6f}"  # 1+4+9+20 over |x||y|
    assert values["MaxAbsoluteError"] == "1.000000"
    assert values["MeanAbsoluteError"] == "0.250000"
    assert values["RootMeanSquareError"] == "0.500000"  # sqrt(1/4)
    assert values["RelativeEuclideanDistance"] == f"{math.sqrt(1 / 39):.6f}"  # |x-y| / |y|
    assert values["MaxRelativeError"] == "0.200000" and values["MeanRelativeError"] == "0.050000"  # |4/5-1|, /4
    assert values["AccumulatedRelativeError"] == "0.200000"
    # KL: each side min-max normalised (the 0 floored at float32's eps), then divided by its sum
    eps = float(np.finfo(np.float32).eps)
    p = [eps, 1 / 3, 2 / 3, 1.0]
    q = [eps, 0.25, 0.5, 1.0]
    p, q = [v / sum(p) for v in p], [v / sum(q) for v in q]
    kl = sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))
    assert float(values["KullbackLeiblerDivergence"]) == pytest.approx(kl, abs=2e-6)
    assert values["StandardDeviation"] == f"(2.500;{math.sqrt(1.25):.3f}),(2.750;{math.sqrt(2.1875):.3f})"


def test_metrics_where_they_cannot_be_computed():
    zeros = np.zeros(5)
    values, _ = metrics.compare(zeros, zeros)
    assert values["CosineSimilarity"] == "1.0"  # both all zero: alike, as msaccucmp says
    values, reason = metrics.compare(zeros, np.ones(5))
    assert values["CosineSimilarity"] == "NaN" and "All the data is zero in the compared tensor" in reason
    values, reason = metrics.compare(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    assert set(values.values()) == {"NaN"} and reason == "the compared tensor holds NaN or Inf"
    values, reason = metrics.compare(np.ones(3), np.ones(4))
    assert set(values.values()) == {"NaN"} and "shape [3] against the golden tensor's [4]" in reason


# --- per layer ----------------------------------------------------------------------------------------------------

def _chain(path, weights: list[np.ndarray]) -> None:
    """Conv -> Relu, three times, then a global pool: float NCHW [n,3,8,8] in."""
    nodes, inits, x = [], [], "input"
    for k, w in enumerate(weights):
        inits.append(numpy_helper.from_array(w, f"w{k}"))
        nodes += [helper.make_node("Conv", [x, f"w{k}"], [f"conv{k}"], name=f"conv{k}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"conv{k}"], [f"relu{k}"], name=f"relu{k}")]
        x = f"relu{k}"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["output"], name="pool"))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 8, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_a_corrupted_layer_is_named_first_below_099(tmp_path):
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
               rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.3,
               rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.3]
    _chain(tmp_path / "golden.onnx", weights)
    broken = [w.copy() for w in weights]
    broken[1][2] = -broken[1][2]  # one output channel of the second convolution with its sign flipped
    _chain(tmp_path / "target.onnx", broken)
    np.save(tmp_path / "x.npy", rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    proc = run_script(["compare.sh", "-gm", "golden.onnx", "-om", "target.onnx", "-i", "x.npy",
                       "-is", "input:4,3,8,8", "-o", "out", "--dump"], cwd=tmp_path)
    assert "first operator below cosine 0.99: conv1 (" in proc.stdout
    (folder,) = (tmp_path / "out").iterdir()
    assert folder.name.isdigit() and len(folder.name) == 14  # {timestamp}: YYYYmmddHHMMSS, as msit names it
    rows = list(csv.reader(io.StringIO((folder / f"result_{folder.name}.csv").read_text())))
    assert tuple(rows[0]) == metrics.HEADER
    by_node = {r[2]: dict(zip(metrics.HEADER, r, strict=True)) | {"row": r} for r in rows[1:]}
    assert list(by_node) == ["conv0", "relu0", "conv1", "relu1", "conv2", "relu2", "pool"]  # every layer, in order
    assert float(by_node["conv0"]["CosineSimilarity"]) == 1.0 and float(by_node["conv1"]["CosineSimilarity"]) < 0.99
    assert by_node["conv1"]["row"][5] == "conv1" and by_node["conv1"]["Shape"] == "[4,8,8,8]"
    assert by_node["conv1"]["TensorIndex"] == "conv1:output:0" and by_node["conv1"]["IsNpuOps"] == "NO"
    assert sorted(p.name for p in (folder / "dump_data" / "target").iterdir())[:2] == ["conv0.0.npy", "conv1.0.npy"]
    assert np.load(folder / "dump_data" / "onnx" / "conv1.0.npy").shape == (4, 8, 8, 8)


def test_a_translation_that_kept_no_names_is_matched_by_its_weights(tmp_path):
    """The .ms path's graph names its nodes Conv_0, Conv_1 ...: its convolutions still find the golden ones."""
    torch = pytest.importorskip("torch")
    from poc.demo.lite_converter import from_onnx
    from poc.formats.ms_lite import read_ms, write_ms
    from poc.formats.ms_lite_onnx import to_onnx
    from poc.models.torch_onnx import torchscript_export

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 5)

        def forward(self, x):
            return self.fc(torch.flatten(torch.mean(torch.relu(self.conv(x)), dim=(2, 3), keepdim=True), 1))
    torch.manual_seed(0)
    buf = io.BytesIO()
    torchscript_export(Tiny().eval(), buf, 11, "logits", {"input": {0: "batch"}}, 8)
    golden = onnx.load_from_string(buf.getvalue())
    translated = to_onnx(read_ms(write_ms(from_onnx(golden, "1.1", "fc"), tmp_path / "t.ms")))
    onnx.save(golden, str(tmp_path / "g.onnx"))
    onnx.save(translated, str(tmp_path / "t.onnx"))
    x = {"input": np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    pairs = matched(onnx_tensors(tmp_path / "t.onnx", x), onnx_tensors(tmp_path / "g.onnx", x))
    found = {t.op_type: g.op_type for t, g in pairs if g is not None}
    assert found.get("Conv") == "Conv" and found.get("Gemm") == "Gemm"


def _profile_net(profile, path):
    """The profile's architecture (its model module's demo network, random weights), exported as its end2end."""
    from poc.models.torch_onnx import torchscript_export
    arch = importlib.import_module(profile.model_module)
    net = arch.feature_network(arch.demo_network(profile.num_classes, 0, 0.2, profile.index_file))
    net.softmax = True
    torchscript_export(net.eval(), str(path), 11, "output", {"input": {0: "batch"}}, profile.image_hw)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_every_profile_and_engine_compares_layer_by_layer(tmp_path, name):
    """Each profile's architecture compiled by both engines (AIPP in front, uint8 input): the golden model gets the
    AIPP stage's output of the same random images; every tensor of the compiled model gets a row, and FP32 against
    FP32 falls nowhere below 0.99."""
    from poc.compile import compile_cpu
    from poc.shared.progress import Log
    profile = profiles.get(name)
    _profile_net(profile, tmp_path / "end2end.onnx")
    hw = profile.image_hw
    for engine in ("onnxruntime", "openvino"):
        compiled = compile_cpu(tmp_path / "end2end.onnx", tmp_path / f"m_{engine}", f"input:1,3,{hw},{hw}",
                               str(profile.aipp_conf), log=Log(True), engine=engine, precision_mode="force_fp32")
        proc = run_script(["compare.sh", "-gm", "end2end.onnx", "-om", compiled.name, "-o", f"out_{engine}",
                           "--profile", name, "--quiet"], cwd=tmp_path)
        assert "first operator below cosine 0.99: none" in proc.stdout, (engine, proc.stdout)
        (csv_path,) = (tmp_path / f"out_{engine}").glob("*/result_*.csv")
        rows = [dict(zip(metrics.HEADER, r, strict=True)) for r in list(csv.reader(io.StringIO(csv_path.read_text())))[1:]]
        compared = [r for r in rows if r["CosineSimilarity"] != "NaN"]
        assert len(compared) >= 50, (engine, len(compared))  # ResNet-50: a row for every convolution at least
        assert float(compared[-1]["CosineSimilarity"]) > 0.9999 and compared[-1]["GroundTruth"]


def test_an_om_goes_to_msit_with_the_arguments_as_given(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "msit", "sys.exit(0)")
    (tmp_path / "m.om").write_bytes(b"om")
    args = ["-gm", "end2end.onnx", "-om", "m.om", "-i", "a.bin,b.bin", "-is", "input:24,3,32,32", "-o", "out",
            "--advisor"]
    run_script(["compare.sh", *args], cwd=tmp_path, env=env_with_path(bin_dir))
    assert tool_calls(bin_dir, "msit") == [["debug", "compare", *args]]
    proc = run_script(["compare.sh", *args], cwd=tmp_path, env=CPU, check=False)  # no NPU: one line, exit 2
    assert proc.returncode == 2 and "an .om runs on the NPU" in proc.stderr and "Traceback" not in proc.stderr


# --- per output ---------------------------------------------------------------------------------------------------

def _outputs(folder, rows: dict[str, np.ndarray], fmt: str):
    folder.mkdir()
    for stem, v in rows.items():
        if fmt == "npy":
            np.save(folder / f"{stem}_0.npy", v.astype(np.float32))
        else:
            (folder / f"{stem}_0.txt").write_text(" ".join(f"{x:.6f}" for x in v))


def test_two_output_folders_image_by_image(tmp_path):
    golden = {f"img{i}": np.eye(5)[i % 5] * 0.9 + 0.02 for i in range(6)}
    target = {k: v.copy() for k, v in golden.items()}
    target["img2"] = np.eye(5)[4] * 0.9 + 0.02  # img2: the compared run says class 4, the golden (and label) 2
    target["img5"][1] = np.nan
    _outputs(tmp_path / "dst_fp32", golden, "txt")
    _outputs(tmp_path / "dst", target, "npy")  # any mix of formats
    (tmp_path / "labels.txt").write_text("".join(f"img{i} {i % 5}\n" for i in range(6)))
    proc = run_script(["compare.sh", "--golden-dir", "dst_fp32", "--target-dir", "dst", "--labels", "labels.txt",
                       "-o", "cmp.csv"], cwd=tmp_path)
    assert "6 images: top-1 agreement 83.33 %" in proc.stdout and "1 with NaN or Inf" in proc.stdout
    assert "right in the golden run only: 1 (img2)" in proc.stdout
    rows = list(csv.DictReader(io.StringIO((tmp_path / "cmp.csv").read_text())))
    assert [r["Image"] for r in rows] == [f"img{i}" for i in range(6)]
    assert rows[2]["Agree"] == "NO" and rows[2]["TargetTop1"] == "4" and rows[2]["GoldenCorrect"] == "YES"
    assert float(rows[0]["CosineSimilarity"]) == pytest.approx(1.0) and rows[5]["CosineSimilarity"] == "NaN"
    assert "NaN or Inf in the target output" in rows[5]["Note"]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    _outputs(tmp_path / "a", {f"img{i}": np.ones(3) for i in range(5)}, "txt")
    _outputs(tmp_path / "b", {f"img{i}": np.ones(3) for i in range(2)}, "txt")
    proc = run_script(["compare.sh", "--golden-dir", "a", "--target-dir", "b", "-o", "c.csv"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "3 images have no output in b (e.g. img2, img3, img4)" in proc.stderr
    rng = np.random.default_rng(0)
    _chain(tmp_path / "g.onnx", [rng.standard_normal(s).astype(np.float32) for s in ((8, 3, 3, 3), (8, 8, 3, 3), (8, 8, 3, 3))])
    other = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["input"], ["elsewhere"], name="r")], "other",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("elsewhere", TensorProto.FLOAT, [2, 3, 8, 8])]),
        opset_imports=[helper.make_opsetid("", 13)])
    other.ir_version = 8
    onnx.save(other, str(tmp_path / "other.onnx"))
    for args, message in (
            (["-gm", "g.onnx", "-om", "other.onnx"], "shares no tensor with g.onnx"),
            (["-gm", "g.onnx", "-om", "g.onnx", "-is", "image:2,3,8,8"], "g.onnx: has no input 'image'"),
            (["-gm", "g.onnx", "-om", "other.onnx", "-is", "input:4,3,8,8"], "batch 4 differs from the compared"),
            (["-gm", "g.onnx", "-om", "missing.onnx"], "missing.onnx")):
        proc = run_script(["compare.sh", *args, "-o", "out", "--aipp", ""], cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "c.csv").exists()
    write_bins(tmp_path / "bins", 2)
    proc = run_script(["compare.sh", "-gm", "g.onnx", "-om", "g.onnx", "-i", "bins", "-o", "bins", "--aipp",
                       str(ROOT / "aipp.conf")], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path / "bins")) == ["img0.bin", "img1.bin"]
