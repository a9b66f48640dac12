"""Stage 4 (quantize.sh + quant.cfg) and stage 5 (atc_convert.sh + aipp.conf), both backends."""
import json
import re
import shutil
import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import MEAN_STD, ROOT, built_once, env_with_path, fake_tool, run_script, tool_calls

from poc.formats.aipp import parse_aipp
from poc.formats.quant_cfg import QuantConfig, parse_quant_cfg
from poc.int8.calibrate import histogram, ifmr_range
from poc.shared.bins import normalise
from poc.shared.errors import InputError

CPU = {"POC_BACKEND": "cpu"}


# --- quant.cfg -------------------------------------------------------------------------------------------

def test_shipped_quant_cfg():
    cfg = parse_quant_cfg(ROOT / "quant.cfg")
    assert (cfg.batch_num, cfg.activation_offset, cfg.channel_wise) == (8, True, True)
    assert (cfg.search_range_start, cfg.search_range_end, cfg.search_step) == (0.7, 1.3, 0.01)
    assert (cfg.max_percentile, cfg.min_percentile) == (0.999999, 0.999999)


def test_quant_cfg_every_field(tmp_path):
    p = tmp_path / "q.cfg"
    p.write_text("""batch_num: 3
activation_offset: false
joint_quant: true
do_fusion: false
skip_layers: "/head/fc/Gemm"
skip_layers: "/backbone/conv1/Conv"
skip_layer_types: "Add"
skip_fusion_layers: "x"
common_config: {
  arq_quantize: { channel_wise: false }
  ifmr_quantize: { search_range_start: 0.8 search_range_end: 1.2 search_step: 0.02
                   max_percentile: 0.9999 min_percentile: 0.999 }
}
""")
    cfg = parse_quant_cfg(p)
    assert cfg == QuantConfig(batch_num=3, activation_offset=False, joint_quant=True, do_fusion=False,
                              skip_layers=["/head/fc/Gemm", "/backbone/conv1/Conv"], skip_layer_types=["Add"],
                              skip_fusion_layers=["x"], channel_wise=False, search_range_start=0.8,
                              search_range_end=1.2, search_step=0.02, max_percentile=0.9999, min_percentile=0.999)


def test_quant_cfg_defaults_when_unset(tmp_path):
    p = tmp_path / "q.cfg"
    p.write_text("batch_num: 1\n")
    assert parse_quant_cfg(p) == QuantConfig(batch_num=1)


@pytest.mark.parametrize("text, message", [
    ("batch_num: 2\nunknown_field: 1\n", r"line 2: .*no field named \"unknown_field\""),
    ("batch_num: 2\ncommon_config {\n  arq_quantize { channel_wise: maybe }\n}\n", r"line 3: .*Expected \"true\" or \"false\""),
    ("batch_num: 2\ncommon_config {\n", r"line 2: Expected \"}\""),
    ("batch_num: -1\n", r"line 1: "),
    ("batch_num: 0\n", "batch_num must be at least 1"),
    ("common_config { ifmr_quantize { search_range_start: 1.5 search_range_end: 1.2 } }\n", "search_range_start"),
])
def test_quant_cfg_errors(tmp_path, text, message):
    p = tmp_path / "q.cfg"
    p.write_text(text)
    with pytest.raises(InputError, match=message):
        parse_quant_cfg(p)


def test_quantize_stops_on_bad_cfg_with_line_number(tmp_path):
    (tmp_path / "q.cfg").write_text("batch_num: 2\nbatch_nun: 3\n")
    proc = run_script(["quantize.sh", "--calibration_config", "q.cfg"], cwd=tmp_path, env=CPU, check=False)
    assert proc.returncode == 2 and "q.cfg: line 2:" in proc.stderr and "batch_nun" in proc.stderr


# --- IFMR ------------------------------------------------------------------------------------------------

def test_ifmr_clips_outliers_and_searches_the_clip():
    rng = np.random.default_rng(0)
    bulk = np.abs(rng.normal(0, 1, 200_000))  # a ReLU output ...
    x = np.concatenate([bulk, [40.0] * 5])      # ... with a few outliers
    counts, _ = np.histogram(x, bins=2048, range=(0, 40))
    cfg = QuantConfig(max_percentile=0.9999)
    lo, hi = ifmr_range(0.0, 40.0, counts, cfg)
    p = np.quantile(x, 0.9999)
    assert lo == 0.0 and 0.7 * p - 0.05 <= hi <= 1.3 * p + 0.05 and hi < 6.0

    def mse(values, hi):
        s = hi / 255
        return np.mean((np.clip(np.round(values / s), 0, 255) * s - values) ** 2)
    assert mse(bulk, hi) < mse(bulk, 40.0) / 20          # far finer steps for the bulk than min/max
    assert mse(x, hi) <= mse(x, p) * 1.02                # the search is no worse than the bare percentile


def test_calibration_histogram_bins_as_numpy_does(monkeypatch):
    """The calibration's chunked float32 histogram: np.histogram's counts, bar values within float32 rounding of a
    bin edge; the top edge lands in the last bin, and the chunks add up."""
    import poc.int8.calibrate
    monkeypatch.setattr(poc.int8.calibrate, "HIST_CHUNK", 1000)  # many chunks, the last one short
    rng = np.random.default_rng(3)
    values = np.maximum(rng.normal(0.5, 2.0, (7, 3, 31, 29)), 0).astype(np.float32)  # a ReLU output
    values.flat[17] = values.max() + 1.5  # the top edge itself
    lo, hi = float(values.min()), float(values.max())
    counts = histogram(values, lo, hi)
    expected = np.histogram(values, bins=2048, range=(lo, hi))[0]
    assert counts.dtype == np.int64 and counts.shape == (2048,) and counts.sum() == values.size
    assert counts[0] == expected[0] >= (values == 0).sum() and counts[-1] == expected[-1] >= 1
    assert np.abs(counts - expected).sum() <= values.size // 10_000  # moved only across an edge, if at all
    assert ifmr_range(lo, hi, counts, QuantConfig()) == ifmr_range(lo, hi, expected, QuantConfig())


def test_ifmr_search_range_bounds_the_clip():
    counts = np.ones(2048, np.int64)
    lo, hi = ifmr_range(-1.0, 1.0, counts, QuantConfig(max_percentile=1.0, min_percentile=1.0,
                                                       search_range_start=0.9, search_range_end=1.1))
    assert 0.9 - 1e-6 <= hi <= 1.1 + 1e-6 and -1.1 - 1e-6 <= lo <= -0.9 + 1e-6


# --- CPU quantization ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quantized(demo_workdir, tmp_path_factory):
    def build(log_dir):
        proc = run_script(["quantize.sh", "--calibration_config", "quant.cfg", "--eval_images", "300"],
                          cwd=demo_workdir, env=CPU)
        (log_dir / "stdout").write_text(proc.stdout)
    log = built_once(tmp_path_factory, "quantized", build) / "stdout"
    return demo_workdir, types.SimpleNamespace(stdout=log.read_text())


def test_cpu_quantize_outputs_and_fidelity(quantized):
    work, proc = quantized
    deploy = work / "models" / "resnet50_quant_deploy_model.onnx"
    twin = work / "models" / "resnet50_quant_fake_quant_model.onnx"
    assert deploy.is_file() and twin.read_bytes() == deploy.read_bytes()
    m = onnx.load(str(deploy))
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") > 50 and "Softmax" in ops
    meta = {p.key: json.loads(p.value) for p in m.metadata_props if p.key == "poc_quantizer"}
    assert meta["poc_quantizer"]["method"] == "ifmr" and meta["poc_quantizer"]["calibration_batches"] == 2
    # weights int8 per channel, activations uint8
    qs = {n.input[1]: n for n in m.graph.node if n.op_type == "DequantizeLinear"}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    zero_point_types = {inits[n.input[2]].dtype for n in m.graph.node if n.op_type == "QuantizeLinear"
                        and n.input[2] in inits}
    assert zero_point_types == {np.dtype("uint8")}
    assert any(inits[n.input[1]].size > 1 and inits[n.input[2]].dtype == np.int8 for n in qs.values()
               if n.input[1] in inits and n.input[2] in inits)
    report = json.loads((work / "models" / "resnet50_quant_quant_report.json").read_text())
    fid = report["fidelity"]
    assert report["backend"] == "cpu" and fid["images"] == 300
    assert fid["top1_agreement"] >= 95.0 and fid["mean_cosine"] > 0.99
    assert abs(fid["fp32_top1"] - fid["int8_top1"]) <= 1.0 + 1e-9  # the bound
    assert "fidelity FP32 vs INT8 on 300 test images" in proc.stdout
    assert "backend: cpu (forced by POC_BACKEND)" in proc.stdout
    assert "joint_quant False, do_fusion True: accepted" in proc.stdout


def test_cpu_quantize_skip_layers_left_float(demo_workdir, tmp_path):
    cfg = tmp_path / "q.cfg"
    cfg.write_text('batch_num: 1\nskip_layers: "/head/fc/Gemm"\nskip_layers: "/backbone/conv1/Conv"\n'
                   'skip_layer_types: "AveragePool"\n')
    run_script(["quantize.sh", "--model", str(demo_workdir / "models/end2end.onnx"), "--save_path", "out/q",
                "--data_dir", str(demo_workdir / "amct_bin_data"), "--calibration_config", str(cfg),
                "--eval_bins", "none", "--quiet"], cwd=tmp_path, env=CPU)
    m = onnx.load(str(tmp_path / "out" / "q_deploy_model.onnx"))
    producers = {o: n for n in m.graph.node for o in n.output}
    gemm = next(n for n in m.graph.node if n.op_type == "Gemm")
    inits = {i.name: i for i in m.graph.initializer}
    assert gemm.input[1] not in producers and inits[gemm.input[1]].data_type == onnx.TensorProto.FLOAT  # float fc
    # compiled, the skipped ops run as float kernels and the rest as integer ones
    run_script(["atc_convert.sh", "--model=out/q_deploy_model.onnx", "--output=out/q_bs24", "--quiet",
                f"--insert_op_conf={ROOT / 'aipp.conf'}"], cwd=tmp_path, env=CPU)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "out" / "q_bs24.onnx")).graph.node]
    assert ops.count("Conv") == 1 and ops.count("QLinearConv") == 52 and "Gemm" in ops and "QGemm" not in ops


@pytest.mark.parametrize("lines, message", [
    ('skip_layers: "no_such_node"', "skip_layers names no node of the model: no_such_node"),
    ('skip_layer_types: "Add"', r"name layers that are not quantized: Add \(quantizable: Conv,"),
    ('skip_layers: "/backbone/layer1/layer1.0/Add"', r"not quantized: /backbone/layer1/layer1.0/Add \(Add\)"),
])
def test_cpu_quantize_bad_skip_layers(demo_workdir, tmp_path, lines, message):
    cfg = tmp_path / "q.cfg"
    cfg.write_text(f"batch_num: 1\n{lines}\n")
    proc = run_script(["quantize.sh", "--model", str(demo_workdir / "models/end2end.onnx"), "--save_path", "q",
                       "--data_dir", str(demo_workdir / "amct_bin_data"), "--calibration_config", str(cfg)],
                      cwd=tmp_path, env=CPU, check=False)
    assert proc.returncode == 2 and f"{cfg}: " in proc.stderr
    assert re.search(message, proc.stderr)
    assert not (tmp_path / "q_deploy_model.onnx").exists()


def test_cpu_quantize_bad_calibration_data(demo_workdir, tmp_path):
    data = tmp_path / "calib"
    data.mkdir()
    (data / "a.bin").write_bytes(b"\0" * 100)
    proc = run_script(["quantize.sh", "--model", str(demo_workdir / "models/end2end.onnx"), "--save_path", "q",
                       "--data_dir", str(data), "--calibration_config", str(demo_workdir / "quant.cfg")],
                      cwd=tmp_path, env=CPU, check=False)
    assert proc.returncode == 2 and "1 calibration files, but batch_num is 2" in proc.stderr
    (data / "b.bin").write_bytes(b"\0" * 100)
    proc = run_script(["quantize.sh", "--model", str(demo_workdir / "models/end2end.onnx"), "--save_path", "q",
                       "--data_dir", str(data), "--calibration_config", str(demo_workdir / "quant.cfg")],
                      cwd=tmp_path, env=CPU, check=False)
    assert proc.returncode == 2 and "a.bin: 100 bytes, expected 294912" in proc.stderr
    assert not (tmp_path / "q_deploy_model.onnx").exists()


# --- AMCT stand-in ---------------------------------------------------------------------------------------

AMCT_BODY = """
args = sys.argv[1:]
save = args[args.index("--save_path") + 1]
pathlib.Path(save + "_deploy_model.onnx").write_bytes(b"amct deploy")
pathlib.Path(save + "_fake_quant_model.onnx").write_bytes(b"amct fake quant")
"""


def test_amct_on_path_runs_exact_command(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "amct_onnx", AMCT_BODY)
    shutil.copy(ROOT / "quant.cfg", tmp_path / "quant.cfg")
    (tmp_path / "models").mkdir()
    proc = run_script(["quantize.sh", "--model", "./models/end2end.onnx", "--save_path", "./models/resnet50_quant",
                       "--input_shape", "input:24,3,32,32", "--data_dir", "./amct_bin_data/", "--data_types",
                       "float32", "--calibration_config", "./quant.cfg"], cwd=tmp_path, env=env_with_path(bin_dir))
    assert tool_calls(bin_dir, "amct_onnx") == [[
        "calibration", "--model", "./models/end2end.onnx", "--save_path", "./models/resnet50_quant",
        "--input_shape", "input:24,3,32,32", "--data_dir", "./amct_bin_data/", "--data_types", "float32",
        "--calibration_config", "./quant.cfg"]]
    assert (tmp_path / "models" / "resnet50_quant_deploy_model.onnx").read_bytes() == b"amct deploy"  # not the fallback
    assert "backend: ascend (amct_onnx found)" in proc.stdout


def test_amct_defaults_are_the_modelzoo_call(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "amct_onnx", AMCT_BODY)
    shutil.copy(ROOT / "quant.cfg", tmp_path / "quant.cfg")
    (tmp_path / "models").mkdir()
    run_script(["quantize.sh", "--quiet"], cwd=tmp_path, env=env_with_path(bin_dir))
    assert tool_calls(bin_dir, "amct_onnx") == [[
        "calibration", "--model", "./models/end2end.onnx", "--save_path", "./models/resnet50_quant",
        "--input_shape", "input:24,3,32,32", "--data_dir", "./amct_bin_data/", "--data_types", "float32",
        "--calibration_config", "./quant.cfg"]]


def test_amct_failure_and_forced_backends(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "amct_onnx", "sys.exit(3)")
    shutil.copy(ROOT / "quant.cfg", tmp_path / "quant.cfg")
    proc = run_script(["quantize.sh"], cwd=tmp_path, env=env_with_path(bin_dir), check=False)
    assert proc.returncode == 1 and "amct_onnx exited with code 3" in proc.stderr
    proc = run_script(["quantize.sh"], cwd=tmp_path, env={"POC_BACKEND": "ascend"}, check=False)
    assert proc.returncode == 1 and "POC_BACKEND=ascend but amct_onnx is not installed" in proc.stderr
    # forced cpu with amct present: amct is not called
    proc = run_script(["quantize.sh"], cwd=tmp_path, env=env_with_path(bin_dir, POC_BACKEND="cpu"), check=False)
    assert len(tool_calls(bin_dir, "amct_onnx")) == 1 and "backend: cpu (forced by POC_BACKEND)" in proc.stdout


def test_amct_gets_configs_the_cpu_fallback_would_refuse(tmp_path):
    """AMCT knows config fields the fallback does not: its own config is its own business."""
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "amct_onnx", AMCT_BODY)
    (tmp_path / "amct.cfg").write_text("batch_num: 2\nnuq_quantize: { num_steps: 32 }\n")
    run_script(["quantize.sh", "--calibration_config", "amct.cfg", "--quiet"], cwd=tmp_path, env=env_with_path(bin_dir))
    assert tool_calls(bin_dir, "amct_onnx")[0][-2:] == ["--calibration_config", "amct.cfg"]
    proc = run_script(["quantize.sh", "--calibration_config", "amct.cfg"], cwd=tmp_path,
                      env=env_with_path(bin_dir, POC_BACKEND="cpu"), check=False)
    assert proc.returncode == 2 and "amct.cfg: line 2:" in proc.stderr


# --- aipp.conf -------------------------------------------------------------------------------------------

def test_shipped_aipp_conf_matches_normalisation_constants():
    a = parse_aipp(ROOT / "aipp.conf")
    assert (a.src_h, a.src_w, a.crop, a.swap_rb) == (32, 32, None, False)
    assert np.allclose(a.min, MEAN_STD[0], atol=1e-3)
    assert np.allclose(a.var_reci, [1 / s for s in MEAN_STD[1]], rtol=1e-6)
    assert a.mean == (0.0, 0.0, 0.0)


def test_aipp_fields_crop_swap_mean(tmp_path):
    p = tmp_path / "a.conf"
    p.write_text("""aipp_op {
  aipp_mode: static
  input_format: RGB888_U8
  src_image_size_w: 40
  src_image_size_h: 36
  crop: true
  load_start_pos_w: 4
  load_start_pos_h: 2
  crop_size_w: 32
  crop_size_h: 32
  rbuv_swap_switch: true
  mean_chn_0: 10
  mean_chn_1: 20
  mean_chn_2: 30
  min_chn_0: 0.5
  var_reci_chn_2: 0.5
}""")
    a = parse_aipp(p)
    assert (a.src_h, a.src_w, a.crop, a.swap_rb) == (36, 40, (2, 4, 32, 32), True)
    assert a.mean == (10, 20, 30) and a.min == (0.5, 0.0, 0.0) and a.var_reci == (1.0, 1.0, 0.5)
    x = np.random.default_rng(0).integers(0, 256, (2, 36, 40, 3), dtype=np.uint8)
    out = a.apply(x)
    assert out.shape == (2, 3, 32, 32)
    xf = x.astype(np.float32)
    assert np.allclose(out[:, 0], xf[:, 2:34, 4:36, 2] - 10 - 0.5)  # channel 0 after the swap is B
    assert np.allclose(out[:, 2], (xf[:, 2:34, 4:36, 0] - 30) * 0.5)


def test_aipp_crop_fields_ignored_without_crop(tmp_path):
    p = tmp_path / "a.conf"
    p.write_text("aipp_op { aipp_mode: static input_format: RGB888_U8 src_image_size_w: 32 src_image_size_h: 32 "
                 "crop: false load_start_pos_w: 4 crop_size_w: 8 }")
    assert parse_aipp(p).crop is None


@pytest.mark.parametrize("body, message", [
    ("csc_switch: true", "csc_switch: true: the CPU fallback cannot emulate"),
    ("resize: true", "resize: true"),
    ("padding: true", "padding: true"),
    ("input_format: YUV420SP_U8", "input_format: YUV420SP_U8"),
    ("aipp_mode: dynamic", "aipp_mode: dynamic"),
    ("mean_chn_3: 1", "a 4th channel"),
    ("crop: true load_start_pos_w: 10 crop_size_w: 30", "does not fit"),
    ("unknown_thing: 1", r"line 1: .*no field named \"unknown_thing\""),
])
def test_aipp_errors(tmp_path, body, message):
    base = {"aipp_mode": "static", "input_format": "RGB888_U8"}
    for line in body.split("  "):
        key = line.split(":")[0]
        base.pop(key, None)
    fields = " ".join(f"{k}: {v}" for k, v in base.items())
    p = tmp_path / "a.conf"
    p.write_text(f"aipp_op {{ {fields} src_image_size_w: 32 src_image_size_h: 32 {body} }}")
    with pytest.raises(InputError, match=message):
        parse_aipp(p)


def test_aipp_syntax_error_line_number(tmp_path):
    p = tmp_path / "a.conf"
    p.write_text("aipp_op {\n  aipp_mode: static\n  input_format: RGB888_U8\n  src_image_size_w 32 32\n}\n")
    with pytest.raises(InputError, match="a.conf: line 4"):
        parse_aipp(p)


# --- CPU compile -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compiled_fp32(demo_workdir, tmp_path_factory):
    built_once(tmp_path_factory, "compiled_fp32", lambda _: run_script(
        ["atc_convert.sh", "--model=models/end2end.onnx", "--output=models/resnet50_fp32_bs24",
         "--input_shape=input:24,3,32,32", "--insert_op_conf=./aipp.conf", "--quiet"], cwd=demo_workdir, env=CPU))
    return demo_workdir / "models" / "resnet50_fp32_bs24.onnx"


def test_compiled_fp32_on_raw_bins_equals_end2end(compiled_fp32, demo_workdir):
    s = ort.InferenceSession(str(compiled_fp32), providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    assert (inp.name, inp.type, inp.shape) == ("input", "tensor(uint8)", [24, 32, 32, 3])
    assert s.get_outputs()[0].shape == [24, 100]
    raw = np.stack([np.fromfile(demo_workdir / "bin_data" / f"img{i}.bin", np.uint8).reshape(32, 32, 3)
                    for i in range(24)])
    ref = ort.InferenceSession(str(demo_workdir / "models" / "end2end.onnx"), providers=["CPUExecutionProvider"])
    want = ref.run(None, {"input": normalise(raw.transpose(0, 3, 1, 2), *MEAN_STD)})[0]
    got = s.run(None, {"input": raw})[0]
    assert np.abs(got - want).max() <= 1e-5


def test_compile_int8_and_speed_path(quantized):
    work, _ = quantized
    run_script(["atc_convert.sh", "--quiet"], cwd=work, env=CPU)  # ModelZoo defaults: the INT8 deploy model
    m = onnx.load(str(work / "models" / "resnet50_quant_bs24.onnx"))
    ops = {n.op_type for n in m.graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops  # QDQ folded into integer kernels offline
    s = ort.InferenceSession(str(work / "models" / "resnet50_quant_bs24.onnx"), providers=["CPUExecutionProvider"])
    raw = np.stack([np.fromfile(work / "bin_data" / f"img{i}.bin", np.uint8).reshape(32, 32, 3) for i in range(24)])
    probs = s.run(None, {"input": raw})[0]
    assert probs.shape == (24, 100) and np.allclose(probs.sum(1), 1, atol=1e-4)


def test_compile_without_aipp_and_errors(demo_workdir, tmp_path):
    run_script(["atc_convert.sh", f"--model={demo_workdir}/models/end2end.onnx", "--output=out/m",
                "--input_shape=input:7,3,32,32", "--insert_op_conf=", "--quiet"], cwd=tmp_path, env=CPU)
    s = ort.InferenceSession(str(tmp_path / "out" / "m.onnx"), providers=["CPUExecutionProvider"])
    assert s.get_inputs()[0].type == "tensor(float)" and s.get_inputs()[0].shape == [7, 3, 32, 32]
    bad = tmp_path / "bad.conf"
    bad.write_text("aipp_op { aipp_mode: static input_format: RGB888_U8 src_image_size_w: 32 "
                   "src_image_size_h: 32 csc_switch: true }")
    proc = run_script(["atc_convert.sh", f"--model={demo_workdir}/models/end2end.onnx", "--output=out/x",
                       f"--insert_op_conf={bad}"], cwd=tmp_path, env=CPU, check=False)
    assert proc.returncode == 2 and "csc_switch: true" in proc.stderr and not (tmp_path / "out" / "x.onnx").exists()
    proc = run_script(["atc_convert.sh", f"--model={demo_workdir}/models/end2end.onnx", "--output=out/x",
                       "--input_shape=data:24,3,32,32"], cwd=tmp_path, env=CPU, check=False)
    assert proc.returncode == 2 and "has no input 'data'" in proc.stderr
    proc = run_script(["atc_convert.sh", "--model=nope.onnx", "--output=out/x"], cwd=tmp_path, env=CPU, check=False)
    assert proc.returncode == 2 and "nope.onnx: no such model file" in proc.stderr


# --- ATC / npu-smi stand-ins -----------------------------------------------------------------------------

ATC_BODY = """
out = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--output=")][0]
pathlib.Path(out + ".om").write_bytes(b"om model")
"""
NPU_SMI_BODY = r"""
print('''+-------------------+-----------------+------------------------------------------------------+
| NPU     Name      | Health          | Power(W)     Temp(C)           Hugepages-Usage(page) |
| Chip    Device    | Bus-Id          | AICore(%)    Memory-Usage(MB)                        |
+===================+=================+======================================================+
| 0       310P3     | OK              | 15.8         42                0    / 0              |
| 0       0         | 0000:82:00.0    | 0            1074 / 21534                            |
+===================+=================+======================================================+''')
"""


def test_atc_on_path_runs_exact_command_with_chip_from_npu_smi(demo_workdir, tmp_path):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "atc", ATC_BODY)
    fake_tool(bin_dir, "npu-smi", NPU_SMI_BODY)
    shutil.copy(demo_workdir / "models" / "end2end.onnx", tmp_path / "fp32.onnx")
    proc = run_script(["atc_convert.sh", "--framework=5", "--model=fp32.onnx", "--output=models/resnet50_bs24",
                       "--input_format=NCHW", "--input_shape=input:24,3,32,32", "--insert_op_conf=./aipp.conf",
                       "--enable_small_channel=1", "--op_select_implmode=high_performance", "--log=error"],
                      cwd=tmp_path, env=env_with_path(bin_dir))
    assert tool_calls(bin_dir, "npu-smi") == [["info"]]
    assert tool_calls(bin_dir, "atc") == [[
        "--framework=5", "--model=fp32.onnx", "--output=models/resnet50_bs24", "--input_format=NCHW",
        "--input_shape=input:24,3,32,32", "--insert_op_conf=./aipp.conf", "--enable_small_channel=1",
        "--op_select_implmode=high_performance", "--soc_version=Ascend310P3", "--log=error"]]
    assert (tmp_path / "models" / "resnet50_bs24.om").read_bytes() == b"om model"
    assert not (tmp_path / "models" / "resnet50_bs24.onnx").exists()  # the fallback was not taken
    assert "(from npu-smi info)" in proc.stdout


def test_atc_given_soc_version_skips_npu_smi(tmp_path, demo_workdir):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "atc", ATC_BODY)
    fake_tool(bin_dir, "npu-smi", NPU_SMI_BODY)
    shutil.copy(demo_workdir / "models" / "end2end.onnx", tmp_path / "m.onnx")
    run_script(["atc_convert.sh", "--model=m.onnx", "--output=o", "--soc_version=Ascend310P1", "--quiet"],
               cwd=tmp_path, env=env_with_path(bin_dir))
    assert tool_calls(bin_dir, "npu-smi") == []
    assert tool_calls(bin_dir, "atc")[0][-2] == "--soc_version=Ascend310P1"


def test_atc_refuses_cpu_qdq_model(quantized, tmp_path):
    work, _ = quantized
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "atc", ATC_BODY)
    proc = run_script(["atc_convert.sh", f"--model={work}/models/resnet50_quant_deploy_model.onnx", "--output=o"],
                      cwd=tmp_path, env=env_with_path(bin_dir), check=False)
    assert proc.returncode == 2 and "QDQ model from the CPU quantizer" in proc.stderr
    assert tool_calls(bin_dir, "atc") == []


def test_forced_ascend_compile_without_atc(tmp_path):
    proc = run_script(["atc_convert.sh"], cwd=tmp_path, env={"POC_BACKEND": "ascend"}, check=False)
    assert proc.returncode == 1 and "POC_BACKEND=ascend but atc is not installed" in proc.stderr


@pytest.mark.parametrize("script", ["quantize.sh", "atc_convert.sh"])
def test_help(script, tmp_path):
    out = run_script([script, "--help"], cwd=tmp_path).stdout
    assert "usage:" in out and "--model" in out


def test_sensitivity_table(demo_workdir, tmp_path):
    """Only what holds on every CPU: the groups partition the graph (the stem is the stem, the neck belongs to the
    head), each group's model quantizes that group's nodes and nothing else, and the figures are sane."""
    import onnx as onnx_

    from poc.int8.fidelity import layer_groups
    cfg = tmp_path / "q.cfg"
    cfg.write_text("batch_num: 1\n")
    proc = run_script(["quantize.sh", "--model", str(demo_workdir / "models/end2end.onnx"), "--save_path", "q",
                       "--data_dir", str(demo_workdir / "amct_bin_data"), "--calibration_config", str(cfg),
                       "--eval_bins", str(demo_workdir / "bin_data"), "--eval_labels",
                       str(demo_workdir / "img_label.txt"), "--eval_images", "48", "--sensitivity"],
                      cwd=tmp_path, env=CPU)
    rows = json.loads((tmp_path / "q_quant_report.json").read_text())["sensitivity"]
    assert [r["group"] for r in rows] == ["all", "stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert rows[0]["nodes"] == sum(r["nodes"] for r in rows[1:])
    assert rows[1]["nodes"] == 2  # the stem conv and its relu, nothing after the backbone
    for r in rows:
        assert r["images"] == 48 and 0.9 < r["mean_cosine"] <= 1.0 + 1e-6 and 0 <= r["top1_agreement"] <= 100
    assert "layer3" in proc.stdout and "top-1 agree" in proc.stdout
    # structure: a group's model has Q/DQ only around that group's nodes
    from poc.int8.qdq import QdqSettings, prepare_float_model, write_qdq
    prepared = prepare_float_model(demo_workdir / "models/end2end.onnx", tmp_path)
    from poc.models.mmcls_resnet import CONV_GROUPS
    groups = layer_groups(onnx_.load(str(prepared)), CONV_GROUPS)
    assert "/neck/GlobalAveragePool" in groups["head"] and "/head/fc/Gemm" in groups["head"]
    ranges = {}
    from poc.int8.calibrate import ifmr_ranges, read_calibration_bins
    from poc.int8.qdq import QUANT_OP_TYPES
    from poc.shared.progress import Log
    batches = read_calibration_bins(demo_workdir / "amct_bin_data", [24, 3, 32, 32], "float32", 1)
    ranges = ifmr_ranges(onnx_.load(str(prepared)), batches, QUANT_OP_TYPES, QuantConfig(), Log(True))
    out = write_qdq(prepared, tmp_path / "l2.onnx", QdqSettings(True, True, "ifmr", (), tuple(groups["layer2"])),
                    tmp_path, ranges)
    consumers = {i for n in out.graph.node if n.op_type == "DequantizeLinear" for i in n.output}
    quantized = {n.name for n in out.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                 and any(i in consumers for i in n.input)}
    assert quantized and all("layer2" in q or "layer3/layer3.0" in q for q in quantized), quantized


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_other_calibration_methods(demo_workdir, tmp_path, method):
    cfg = tmp_path / "q.cfg"
    cfg.write_text("batch_num: 1\n")
    run_script(["quantize.sh", "--model", str(demo_workdir / "models/end2end.onnx"), "--save_path", "q",
                "--data_dir", str(demo_workdir / "amct_bin_data"), "--calibration_config", str(cfg),
                "--eval_bins", str(demo_workdir / "bin_data"), "--eval_images", "48", "--method", method, "--quiet"],
               cwd=tmp_path, env=CPU)
    report = json.loads((tmp_path / "q_quant_report.json").read_text())
    assert report["method"] == method and report["fidelity"]["images"] == 48
    m = onnx.load(str(tmp_path / "q_deploy_model.onnx"))
    assert json.loads({p.key: p.value for p in m.metadata_props}["poc_quantizer"])["method"] == method


def test_eval_images_natural_order_labels_and_bad_size(tmp_path):
    from poc.shared.bins import read_image_bins as load_eval_images
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        (tmp_path / f"img{i}.bin").write_bytes(img.tobytes())
    (tmp_path / "l.txt").write_text("".join(f"img{i} {i % 7}\n" for i in range(12)))
    got, labels = load_eval_images(tmp_path, tmp_path / "l.txt", 11, 32)
    assert np.array_equal(got, images[:11]) and list(labels) == [i % 7 for i in range(11)]  # img10 after img9
    (tmp_path / "img3.bin").write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match=r"img3.bin: 100 bytes, expected 3072"):
        load_eval_images(tmp_path, None, 12, 32)


def _names_say(node_name: str) -> str:
    """The group an exporter's node name says (/backbone/layer2/... or /layer2/layer2.0/...), for comparison."""
    parts = node_name.split("/")
    layer = next((p for p in parts if p.startswith("layer") and p[5:].isdigit()), None)
    if layer:
        return layer
    return "head" if any(k in node_name for k in ("neck", "head", "end_point", "Flatten", "ReduceMean", "Softmax")) \
        else "stem"


@pytest.mark.parametrize("profile_name", ["mmcls-resnet50-cifar100", "ms-resnet50-0.65x-pets",
                                          "ms-resnet50-plain-cifar10"])
def test_layer_groups_of_every_profile_come_from_its_model_module(profile_name, tmp_path):
    """The sensitivity table's rows for each architecture: stem, layer1-4, head, with the convolutions its model
    module counts per stage; where the exporter's names say the stage (mmcls, the pruned net), they agree with
    the structure; the .ms translation's names say nothing, and the structure still finds the stages."""
    import importlib
    import io

    from poc import profiles
    from poc.int8.fidelity import GROUPS, layer_groups
    from poc.models.torch_onnx import torchscript_export
    profile = profiles.get(profile_name)
    facts = importlib.import_module(profile.model_module)
    net = facts.feature_network(facts.demo_network(profile.num_classes, 0, 0.2, profile.index_file))
    net.softmax = profile.weights != "ms"  # a .ms file outputs logits
    buf = io.BytesIO()
    torchscript_export(net.eval(), buf, 11, "output", {"input": {0: "batch"}}, 32)
    model = onnx.load_from_string(buf.getvalue())
    if profile.arch == "plain_resnet50":  # its end2end.onnx is the translation of the .ms file
        from poc.demo.lite_converter import from_onnx
        from poc.formats.ms_lite import read_ms, write_ms
        from poc.formats.ms_lite_onnx import to_onnx
        model = to_onnx(read_ms(write_ms(from_onnx(model, "1.1", "matmul", order="bfs"), tmp_path / "m.ms")))
        assert all(n.name.split("_")[0] == n.op_type for n in model.graph.node)  # Conv_12: nothing about stages
    groups = layer_groups(model, facts.CONV_GROUPS)
    assert list(groups) == list(GROUPS)
    kinds = {n.name: n.op_type for n in model.graph.node}
    assert [sum(kinds[n] == "Conv" for n in groups[g]) for g, _ in facts.CONV_GROUPS] == \
        [count for _, count in facts.CONV_GROUPS]
    assert {kinds[n] for n in groups["head"]} >= {"Gemm", "Softmax"}
    if profile.arch != "plain_resnet50":
        said = {n: _names_say(n) for n in kinds}
        assert {n: g for g, names in groups.items() for n in names} == said


def test_the_int8_demo_model_per_layer_names_its_worst_layers(quantized, tmp_path):
    """The demo's QDQ model compiled to ONNX Runtime's integer kernels: its QLinearConv outputs dequantized and
    compared with the FP32 model's, the worst layers printed."""
    work, _ = quantized
    run_script(["atc_convert.sh", "--model=models/resnet50_quant_deploy_model.onnx", f"--output={tmp_path / 'int8'}",
                "--insert_op_conf=./aipp.conf", "--quiet"], cwd=work, env=CPU)
    proc = run_script(["compare.sh", "-gm", "models/end2end.onnx", "-om", str(tmp_path / "int8.onnx"), "-i", "bin_data",
                       "-o", str(tmp_path / "out")], cwd=work)
    assert "the worst by cosine:" in proc.stdout and "first operator below cosine 0.99:" in proc.stdout
    import csv
    import io

    from poc.accuracy import metrics
    (csv_path,) = (tmp_path / "out").glob("*/result_*.csv")
    rows = [dict(zip(metrics.HEADER, r, strict=True)) | {"row": r}
            for r in list(csv.reader(io.StringIO(csv_path.read_text())))[1:]]
    qconv = [r for r in rows if r["OpType"] == "QLinearConv"]
    assert len(qconv) == 53 and all(0.9 < float(r["CosineSimilarity"]) <= 1 for r in qconv)
    assert {r["row"][3] for r in qconv} == {"uint8"}  # computed in integers, compared dequantized
