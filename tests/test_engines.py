"""The second CPU engine: OpenVINO IRs from the compile stage, run by the same runner, against ONNX Runtime.
Small models and the small demo set; no timing assertions."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import ROOT, built_once, env_with_path, fake_tool, identity_model, run_script, tool_calls

from poc.compile import compile_cpu
from poc.engines.onnxruntime import OnnxRuntimeBackend
from poc.engines.openvino import PRECISION_KEY, OpenVinoBackend, native_bf16
from poc.formats.aipp import parse_aipp
from poc.shared.progress import Log

CPU = {"POC_BACKEND": "cpu"}


def _outputs(folder):
    names = sorted(os.listdir(folder))
    return np.stack([np.load(folder / n)[0] for n in names]), names


@pytest.fixture(scope="module")
def both_engines(demo_workdir, tmp_path_factory):
    """FP32 and INT8 compiled by both engines, and their outputs over the demo bins."""
    work = demo_workdir
    models = {(engine, precision): f"{engine}_{precision}" + (".onnx" if engine == "onnxruntime" else ".xml")
              for precision in ("fp32", "int8") for engine in ("onnxruntime", "openvino")}

    def build(out):
        if not (work / "models" / "resnet50_quant_deploy_model.onnx").is_file():
            run_script(["quantize.sh", "--calibration_config", "quant.cfg", "--eval_images", "0", "--quiet"], cwd=work,
                       env=CPU)
        sources = {"fp32": "models/end2end.onnx", "int8": "models/resnet50_quant_deploy_model.onnx"}
        for (engine, precision), name in models.items():
            prefix = out / f"{engine}_{precision}"
            run_script(["atc_convert.sh", f"--model={sources[precision]}", f"--output={prefix}",
                        "--insert_op_conf=./aipp.conf", f"--engine={engine}", "--quiet"], cwd=work, env=CPU)
            run_script(["infer.sh", "--model", str(out / name), "--input", "bin_data", "--output", str(out),
                        "--output_dirname", f"{engine}_{precision}_out", "--outfmt", "NPY", "--quiet"], cwd=work)
    out = built_once(tmp_path_factory, "engines", build)
    return out, {k: out / name for k, name in models.items()}


def test_openvino_ir_takes_exactly_the_oms_input(both_engines):
    out, models = both_engines
    xml = models[("openvino", "int8")]
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    backend = OpenVinoBackend().load(xml)
    assert backend.input_info() == [("input", np.dtype(np.uint8), [24, 32, 32, 3])]
    assert backend.name() == "openvino" and backend.precision == "f32"


def test_fp32_engines_agree_within_1e_4(both_engines):
    out, _ = both_engines
    ort_out, names = _outputs(out / "onnxruntime_fp32_out")
    ov_out, ov_names = _outputs(out / "openvino_fp32_out")
    assert names == ov_names and len(names) > 100
    assert np.abs(ort_out - ov_out).max() <= 1e-4


def test_int8_engines_agree_on_top1_and_cosine(both_engines):
    """The two engines run the same QDQ model with their own integer kernels (requantization rounds differently).
    Each is within quantization noise of FP32, and they are as close to each other as that noise allows. (On the
    full demo set, 2,000 images, they agree on >= 99 % of top-1: docs/PERFORMANCE.md; this small test model, fitted
    on 600 images and calibrated on 48, is noisier.)"""
    out, _ = both_engines
    fp32, _ = _outputs(out / "onnxruntime_fp32_out")
    ort_int8, _ = _outputs(out / "onnxruntime_int8_out")
    ov_int8, _ = _outputs(out / "openvino_int8_out")

    def agree(a, b):
        return (a.argmax(1) == b.argmax(1)).mean() * 100

    def cosine(a, b):
        return ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean()
    assert cosine(ov_int8, ort_int8) >= 0.99 and cosine(ov_int8, fp32) >= 0.99 and cosine(ort_int8, fp32) >= 0.99
    assert agree(ort_int8, fp32) >= 95 and agree(ov_int8, fp32) >= agree(ort_int8, fp32) - 2
    assert agree(ov_int8, ort_int8) >= 95


@pytest.mark.parametrize("crop, swap", [(True, True), (False, True), (True, False)])
def test_aipp_gives_the_same_pixels_into_the_network_on_both_engines(tmp_path, crop, swap):
    conf = tmp_path / "a.conf"
    conf.write_text(f"aipp_op {{ aipp_mode: static input_format: RGB888_U8 src_image_size_w: 40 src_image_size_h: 36 "
                    f"crop: {str(crop).lower()} load_start_pos_w: 5 load_start_pos_h: 3 crop_size_w: 32 crop_size_h: 30 "
                    f"rbuv_swap_switch: {str(swap).lower()} mean_chn_0: 10 mean_chn_2: 30 min_chn_0: 0.5 "
                    f"min_chn_1: 1.5 var_reci_chn_0: 0.25 var_reci_chn_2: 2.0 }}")
    aipp = parse_aipp(conf)
    h, w = aipp.out_hw
    onnx.save(identity_model(h, w), str(tmp_path / "id.onnx"))
    x = np.random.default_rng(1).integers(0, 256, (2, 36, 40, 3), dtype=np.uint8)
    want = aipp.apply(x)
    got = {}
    for engine in ("onnxruntime", "openvino"):
        path = compile_cpu(tmp_path / "id.onnx", tmp_path / engine, f"input:2,3,{h},{w}", conf, log=Log(True),
                           engine=engine)
        backend = (OpenVinoBackend() if engine == "openvino" else OnnxRuntimeBackend()).load(path)
        got[engine] = backend.predict({"input": x})[0]
        assert np.allclose(got[engine], want, atol=1e-4), engine


def test_precision_mode_on_each_engine(demo_workdir, tmp_path):
    src = demo_workdir / "models" / "end2end.onnx"
    (tmp_path / "aipp.conf").write_text((ROOT / "aipp.conf").read_text())
    proc = run_script(["atc_convert.sh", f"--model={src}", "--output=bf", "--engine=openvino",
                       "--precision_mode=force_fp16"], cwd=tmp_path, env=CPU)
    import openvino as ov
    got = ov.Core().read_model(str(tmp_path / "bf.xml")).get_rt_info([PRECISION_KEY]).astype(str)
    if native_bf16():
        assert got == "bf16" and "inference precision BF16" in proc.stdout
    else:
        assert got == "f32" and "no native BF16" in proc.stdout
    assert OpenVinoBackend().load(tmp_path / "bf.xml").precision == got
    run_script(["atc_convert.sh", f"--model={src}", "--output=keep", "--engine=openvino",
                "--precision_mode=must_keep_origin_dtype", "--quiet"], cwd=tmp_path, env=CPU)
    assert ov.Core().read_model(str(tmp_path / "keep.xml")).get_rt_info([PRECISION_KEY]).astype(str) == "f32"
    proc = run_script(["atc_convert.sh", f"--model={src}", "--output=o", "--precision_mode=force_fp16"],
                      cwd=tmp_path, env=CPU)
    assert "ONNX Runtime computes in FP32" in proc.stdout and (tmp_path / "o.onnx").is_file()
    proc = run_script(["atc_convert.sh", f"--model={src}", "--output=o", "--precision_mode=fp64_please"],
                      cwd=tmp_path, env=CPU, check=False)
    assert proc.returncode == 2 and "is not an ATC precision mode" in proc.stderr


def test_poc_engine_selects_openvino_and_the_runner_follows_the_file(demo_workdir, tmp_path):
    from poc.config import compiled_model
    src = demo_workdir / "models" / "end2end.onnx"
    (tmp_path / "aipp.conf").write_text((ROOT / "aipp.conf").read_text())
    run_script(["atc_convert.sh", f"--model={src}", "--output=m", "--quiet"], cwd=tmp_path, env=CPU)
    run_script(["atc_convert.sh", f"--model={src}", "--output=m", "--quiet"], cwd=tmp_path,
               env={**CPU, "POC_ENGINE": "openvino"})
    assert (tmp_path / "m.xml").is_file() and (tmp_path / "m.onnx").is_file()
    assert compiled_model(tmp_path / "m") == tmp_path / "m.xml"  # written last
    proc = run_script(["infer.sh", "--model", "m.xml", "--loop", "2"], cwd=tmp_path)
    assert "OpenVINO runner" in proc.stdout and "throughput 1000*batchsize.mean(24)" in proc.stdout
    proc = run_script(["atc_convert.sh", f"--model={src}", "--output=m"], cwd=tmp_path,
                      env={**CPU, "POC_ENGINE": "tensorrt"}, check=False)
    assert proc.returncode == 2 and "POC_ENGINE: 'tensorrt' is not one of onnxruntime, openvino" in proc.stderr


def test_atc_gets_precision_mode_unchanged(demo_workdir, tmp_path):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "atc", "out = [a.split('=', 1)[1] for a in sys.argv[1:] if a.startswith('--output=')][0]\n"
                              "pathlib.Path(out + '.om').write_bytes(b'om')")
    (tmp_path / "m.onnx").write_bytes((demo_workdir / "models" / "end2end.onnx").read_bytes())
    run_script(["atc_convert.sh", "--model=m.onnx", "--output=o", "--soc_version=Ascend310P3",
                "--precision_mode=allow_mix_precision", "--quiet"], cwd=tmp_path, env=env_with_path(bin_dir))
    assert tool_calls(bin_dir, "atc")[0][-1] == "--precision_mode=allow_mix_precision"


def test_openvino_ir_that_is_not_one(tmp_path):
    (tmp_path / "bad.xml").write_text("<net>")
    proc = run_script(["infer.sh", "--model", "bad.xml"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr == "error: bad.xml: OpenVINO cannot read it (not an OpenVINO IR)\n"


def test_summary_json_names_the_engine(both_engines):
    out, _ = both_engines
    s = json.loads((out / "openvino_int8_out_summary.json").read_text())
    assert s["device"].startswith("CPU (openvino ")
    assert len(s["filesinfo"]) == len(os.listdir(out / "openvino_int8_out"))


def _small_conv_model(batch, out_batch_dim=True, fixed_reshape=False):
    """float [batch,3,8,8] -> 3x3 conv (4 ch) -> 1x1 conv (4 ch) -> output; a tiny network with real layers.
    ``out_batch_dim=False``: the output is summed over the batch (no batch dimension to split);
    ``fixed_reshape``: a Reshape with the batch written into it."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], name="/conv1/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="/conv2/Conv")]
    out_shape = [batch, 4, 8, 8]
    if fixed_reshape:
        inits.append(numpy_helper.from_array(np.array([batch, 256], np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["c2", "shape"], ["output"]))
        out_shape = [batch, 256]
    elif not out_batch_dim:
        nodes.append(helper.make_node("ReduceSum", ["c2"], ["output"], axes=[0], keepdims=0))
        out_shape = [4, 8, 8]
    else:
        nodes.append(helper.make_node("Identity", ["c2"], ["output"]))
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("batch, cores, want", [(24, 2, 2), (24, 1, 1), (1, 2, 1), (24, 16, 3), (16, 2, 2),
                                                 (12, 2, 1), (9, 4, 1)])
def test_batch_split_over_streams(tmp_path, batch, cores, want):
    """A batch goes to one stream per core in slices of MIN_STREAM_BATCH or more that divide it exactly."""
    import openvino as ov

    from poc.engines.openvino import MIN_STREAM_BATCH, batch_streams
    assert MIN_STREAM_BATCH == 8  # the cases below are written for it
    onnx.save(_small_conv_model(batch), str(tmp_path / "m.onnx"))
    assert batch_streams(ov.Core().read_model(str(tmp_path / "m.onnx")), cores) == want


def test_a_model_whose_batch_cannot_be_split_runs_whole(tmp_path):
    import openvino as ov

    from poc.engines.openvino import batch_streams
    for name, model in (("nobatch", _small_conv_model(24, out_batch_dim=False)),
                        ("fixed", _small_conv_model(24, fixed_reshape=True))):
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
    assert batch_streams(ov.Core().read_model(str(tmp_path / "nobatch.onnx")), 2) == 1
    backend = OpenVinoBackend().load(tmp_path / "fixed.onnx")  # the split reshape fails: one stream, whole batch
    assert backend.streams == 1
    x = np.random.default_rng(2).standard_normal((24, 3, 8, 8)).astype(np.float32)
    want = OnnxRuntimeBackend().load(tmp_path / "fixed.onnx").predict({"input": x})[0]
    assert np.allclose(backend.predict({"input": x})[0], want, atol=1e-4)


def test_streams_give_the_outputs_of_one_stream(both_engines, monkeypatch):
    """The compiled models run as two streams of 12 (two cores, as on this machine) and as one stream of 24: the same
    outputs, in the same order."""
    _, models = both_engines
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    x = np.random.default_rng(3).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    for precision in ("fp32", "int8"):
        split = OpenVinoBackend().load(models[("openvino", precision)])
        whole = OpenVinoBackend().load(models[("openvino", precision)], threads=2)
        assert (split.streams, whole.streams) == (2, 1)
        assert split.input_info() == whole.input_info() == [("input", np.dtype(np.uint8), [24, 32, 32, 3])]
        a, b = split.predict({"input": x})[0], whole.predict({"input": x})[0]
        assert a.shape == b.shape == (24, 100)
        assert np.allclose(a, b, atol=1e-4), precision
        assert (a.argmax(1) == b.argmax(1)).all()


def test_layer_profile_of_both_engines(both_engines, demo_workdir, tmp_path):
    """Every convolution of the compiled models is found in the float source and gets a multiply-add rate; the layer
    times add up to the batch's."""
    from poc.perf.layer_profile import profile, source_convs
    _, models = both_engines
    source = demo_workdir / "models" / "end2end.onnx"
    convs = source_convs(source, 32)
    assert len(convs) == 53 and convs["/backbone/conv1/Conv"].kernel == "3x3"
    assert convs["/backbone/layer4/layer4.1/conv2/Conv"].out_hw == "4x4"
    for engine in ("onnxruntime", "openvino"):
        p = profile(models[(engine, "int8")], source, 32, runs=2, warmup=1)
        assert p["engine"] == engine and p["batch"] == 24
        conv_rows = [r for r in p["groups"] if r["what"].startswith("conv ")]
        assert sum(r["layers"] for r in conv_rows) == 53, engine
        assert all(r["gmac_per_s"] > 0 for r in conv_rows)
        assert abs(sum(r["ms"] for r in p["groups"]) - p["ms_per_batch"]) < 1e-6
        assert abs(sum(r["share"] for r in p["groups"]) - 1) < 1e-9
    proc = subprocess.run([sys.executable, "-m", "poc.layer_profile", "--model", str(tmp_path / "none.xml")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "none.xml: no such model file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ctrl_c_after_models_come_and_go_is_an_interrupt_not_a_crash(both_engines):
    """Two OpenVINO models loaded and dropped (as the benchmark's sweep does), then SIGINT: a KeyboardInterrupt.
    (With a Core per model, a model dropped before a later one put back an alternate signal stack that was freed
    with the later one, and the signal crashed; the stack is the one OpenVINO's AMX kernels need, so on a CPU
    without AMX this passes either way.)"""
    _, models = both_engines
    script = (
        "import gc, os, signal, sys, time, numpy as np\n"
        "from poc.engines.openvino import OpenVinoBackend\n"
        "first, second = (OpenVinoBackend().load(sys.argv[1]) for _ in range(2))\n"
        "[m.predict({'input': np.zeros((24, 32, 32, 3), np.uint8)}) for m in (first, second)]\n"
        "del first; gc.collect(); del second; gc.collect()\n"  # dropped in the order they came, not the reverse
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT); time.sleep(0.5)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n")
    proc = subprocess.run([sys.executable, "-c", script, str(models[("openvino", "int8")])], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "interrupted\n", (proc.returncode, proc.stderr[-300:])


def _qlinearconv_model(weights: list[np.ndarray], share_zero_point: bool = False):
    """u8 [1,C,6,6] -> a chain of QLinearConv 3x3 (pads 1), one per weight tensor [C,C,3,3] (int8, per-channel
    scales, zero point 0) -> u8."""
    from onnx import TensorProto, helper, numpy_helper
    c = weights[0].shape[0]
    inits = [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.uint8(3), "z")]
    nodes, x = [], "input"
    for i, w in enumerate(weights):
        zp = "wz" if share_zero_point else f"wz{i}"
        if not share_zero_point or i == 0:
            inits.append(numpy_helper.from_array(np.zeros(c, np.int8), zp))
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.linspace(0.0002, 0.0008, c).astype(np.float32), f"ws{i}")]
        y = "output" if i == len(weights) - 1 else f"y{i}"
        nodes.append(helper.make_node("QLinearConv", [x, "s", "z", f"w{i}", f"ws{i}", zp, "s", "z"], [y],
                                      pads=[1, 1, 1, 1], name=f"conv{i}"))
        x = y
    shape = [1, c, 6, 6]
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("input", TensorProto.UINT8, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.UINT8, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_weight_zero_point_shift_is_exact_and_leaves_what_it_cannot_move():
    from poc.engines.onnxruntime import MIN_AMX_DEPTH, shift_weight_zero_points
    rng = np.random.default_rng(4)
    deep = [rng.integers(-127, 128, (32, 32, 3, 3)).astype(np.int8) for _ in range(3)]  # depth 288
    assert 32 * 9 >= MIN_AMX_DEPTH > 4 * 9
    with_min = deep[1].copy()
    with_min[0, 0, 0, 0] = -128  # cannot go one lower
    shallow = [rng.integers(-127, 128, (4, 4, 3, 3)).astype(np.int8) for _ in range(2)]  # depth 36: left
    for weights, shared, want in (([deep[0], deep[2]], False, 2), ([deep[0], with_min, deep[2]], False, 2),
                                  ([deep[0], deep[2]], True, 0), (shallow, False, 0)):
        model = _qlinearconv_model(weights, shared)
        x = rng.integers(0, 256, (1, weights[0].shape[0], 6, 6), dtype=np.uint8)
        before = OnnxRuntimeBackend().load(model.SerializeToString()).predict({"input": x})[0]
        assert shift_weight_zero_points(model) == want
        after = OnnxRuntimeBackend().load(model.SerializeToString()).predict({"input": x})[0]
        assert np.array_equal(before, after) and len(np.unique(after)) > 10  # exact, and not a saturated output
        zero_points = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.startswith("wz")]
        assert sum(bool((z == -1).all()) for z in zero_points) == want
        assert shift_weight_zero_points(model) == 0  # once only


@pytest.mark.parametrize("amx", [True, False])
def test_compile_moves_weight_zero_points_only_where_the_cpu_has_amx(both_engines, demo_workdir, tmp_path,
                                                                      monkeypatch, amx):
    import poc.engines.onnxruntime
    monkeypatch.setattr(poc.engines.onnxruntime, "amx_int8", lambda: amx)
    out = compile_cpu(demo_workdir / "models" / "resnet50_quant_deploy_model.onnx", tmp_path / "m",
                      "input:24,3,32,32", ROOT / "aipp.conf", log=Log(True))
    from poc.engines.onnxruntime import MIN_AMX_DEPTH
    graph = onnx.load(str(out)).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "QLinearConv"]
    deep = [int(np.prod(inits[n.input[3]].shape[1:])) >= MIN_AMX_DEPTH for n in convs]
    assert len(convs) == 53 and 0 < sum(deep) < 53  # the stem and the shallow 1x1s stay as they are
    for conv, is_deep in zip(convs, deep, strict=True):
        assert (inits[conv.input[5]] == (-1 if amx and is_deep else 0)).all(), conv.name
    _, models = both_engines  # the same outputs as the model compiled the other way (on this CPU: either)
    x = np.random.default_rng(5).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    want = OnnxRuntimeBackend().load(models[("onnxruntime", "int8")]).predict({"input": x})[0]
    assert np.array_equal(OnnxRuntimeBackend().load(out).predict({"input": x})[0], want)


class _RecordingEngine:
    """A stand-in engine that keeps two batches in flight: it records what is outstanding and hands each batch's
    outputs (2x + 1 of its input) back only through ``collect``, so a runner that mixed batches up would show it."""

    in_flight = 2

    def __init__(self):
        self.outstanding, self.most_outstanding, self.submitted = [], 0, 0

    def name(self):
        return "recording"

    def version(self):
        return "0"

    def load(self, model, threads=0):
        return self

    def input_info(self):
        return [("input", np.dtype(np.float32), [4, 2])]

    def predict(self, feed):
        return [feed["input"] * 2 + 1]

    def submit(self, feed):
        ticket = (self.submitted, feed["input"].copy())
        self.submitted += 1
        self.outstanding.append(ticket)
        self.most_outstanding = max(self.most_outstanding, len(self.outstanding))
        return ticket

    def collect(self, ticket):
        assert self.outstanding[0] is ticket, "collected out of submission order"
        self.outstanding.pop(0)
        return [ticket[1] * 2 + 1]

    def finished_at(self, ticket):
        return None  # when collected


def test_in_flight_times_batches_by_when_the_engine_finished_them(monkeypatch):
    """Two batches collected late, one right after the other, keep the times the engine noted (finished_at), not
    one long and one of microseconds; a batch finished before the one ahead of it took no time of its own."""
    import poc.engines.base
    from poc.engines.base import InFlight
    clock = iter([0.0, 1.0, 9.0, 9.00001, 10.0, 12.0, 12.5])  # perf_counter: submits and collects, in call order

    class Noted(_RecordingEngine):
        finished = {0: 3.0, 1: 5.0, 2: 11.0}  # batch 2 finished at 11 s, collected at 12 s

        def finished_at(self, ticket):
            return self.finished[ticket[0]]
    monkeypatch.setattr(poc.engines.base.time, "perf_counter", lambda: next(clock))
    queued, feed = InFlight(Noted()), {"input": np.ones((4, 2), np.float32)}
    queued.submit(feed)  # submitted 0.0
    queued.submit(feed)  # submitted 1.0; batch 0 collected at 9.0 (finished 3.0)
    queued.submit(feed)  # submitted 9.00001; batch 1 collected at 10.0 (finished 5.0)
    queued.collect_all()  # batch 2 collected at 12.0 (finished 11.0)
    assert queued.times == pytest.approx([3000.0, 2000.0, (11.0 - 9.00001) * 1000])
    Noted.finished = {0: 3.0, 1: 2.0}  # the second batch finished first (another stream): no time of its own
    clock = iter([0.0, 1.0, 4.0, 5.0])
    queued = InFlight(Noted())
    queued.submit(feed)
    queued.submit(feed)
    queued.collect_all()
    assert queued.times == [3000.0, 0.0]


def test_two_batches_in_flight_keep_outputs_with_their_inputs(tmp_path, monkeypatch):
    """With an engine that runs two batches at once, every output file still holds its own input's result, each run
    of each batch (--loop 2) gets a compute time, and no more than two batches are ever outstanding."""
    import poc.engines.pick
    from poc import runner
    from poc.shared.aisbench import format_txt
    engine = _RecordingEngine()
    monkeypatch.setattr(poc.engines.pick, "backend_for", lambda _model: engine)
    data = tmp_path / "bins"
    data.mkdir()
    values = {f"img{i}": np.array([i, -i / 3], np.float32) for i in range(10)}  # 10 files: batches of 4, 4, 2+2 pad
    for stem, v in values.items():
        v.tofile(data / f"{stem}.bin")
    summary = runner.run(runner.RunOptions("stand-in.onnx", input=str(data), output=str(tmp_path), output_dirname="out",
                                           outfmt="TXT", loop=2, quiet=True), Log(True), show_summary=False)
    assert engine.submitted == 6 and engine.most_outstanding == 2 and not engine.outstanding
    times = summary["npu_compute_time_list"]
    assert len(times) == 6 and all(t >= 0 for t in times) and summary["NPU_compute_time"]["count"] == 6
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{stem}_0.txt" for stem in values)
    for stem, v in values.items():
        assert (tmp_path / "out" / f"{stem}_0.txt").read_bytes() == format_txt(v * 2 + 1), stem


def test_benchmark_table_times_batches_as_the_runner_runs_them():
    """The benchmark's interleaved rounds queue the next batch behind the one ahead, as the runner does: at most the
    engine's two in flight, every timed run collected in order, one compute time per run."""
    from poc.benchmark import interleaved
    engine = _RecordingEngine()
    timed = interleaved({"stand-in": (engine, {"input": np.ones((4, 2), np.float32)}, 4)}, loop=7, block=5,
                        log=Log(True))
    t = timed["stand-in"]
    assert engine.submitted == 7 and engine.most_outstanding == 2 and not engine.outstanding
    assert t.batch == 4 and len(t.ms) == 7 and all(x >= 0 for x in t.ms)
    # two rounds (5 runs, then 2), each with its runs' time back to back: the spread is over rounds
    assert [n for n, _ in t.rounds] == [5, 2] and sum(ms for _, ms in t.rounds) == pytest.approx(sum(t.ms))
    assert t.round_rates(4) == pytest.approx([4 * n * 1000 / ms for n, ms in t.rounds])


def _small_maps_model(batch, qdq=False):
    """float [batch,3,8,8] -> 3x3 (8x8 maps: left) -> 3x3 stride 2 with bias (4x4: rewritten) -> Relu -> 3x3 (4x4:
    rewritten) -> 3x3 in 2 groups (left) -> 1x1 (left). ``qdq``: a QuantizeLinear/DequantizeLinear pair before the
    second 4x4 convolution, as in a quantized model."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(5)

    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for n, a in (("wa", w(8, 3, 3, 3)), ("wb", w(8, 8, 3, 3)),
                                                        ("bb", w(8)), ("wc", w(8, 8, 3, 3)), ("wd", w(8, 4, 3, 3)),
                                                        ("we", w(8, 8, 1, 1)))]
    same = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["input", "wa"], ["a"], name="a", **same),
             helper.make_node("Conv", ["a", "wb", "bb"], ["b"], name="b", strides=[2, 2], **same),
             helper.make_node("Relu", ["b"], ["rb"])]
    c_in = "rb"
    if qdq:
        inits += [numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.uint8(0), "z")]
        nodes += [helper.make_node("QuantizeLinear", ["rb", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        c_in = "dq"
    nodes += [helper.make_node("Conv", [c_in, "wc"], ["c"], name="c", **same),
              helper.make_node("Conv", ["c", "wd"], ["d"], name="d", group=2, **same),
              helper.make_node("Conv", ["d", "we"], ["output"], name="e")]
    graph = helper.make_graph(nodes, "small_maps", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 8, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _with_batch(model, batch):
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    return model


def test_batch_along_the_width_is_exact_and_leaves_the_batch_free():
    """Only the plain 3x3 convolutions with 4x4 outputs are rewritten (one strided, one not); the outputs equal the
    original's to float rounding, also at a batch other than the one the rewrite saw."""
    from poc.engines.batch_along_width import lay_batch_along_width
    wide, changed = lay_batch_along_width(_small_maps_model(5))
    assert changed == 2
    assert sorted(n.name for n in wide.graph.node if n.op_type == "Conv") == ["a", "b", "c", "d", "e"]
    onnx.checker.check_model(wide)
    for batch in (5, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype(np.float32)
        want = OnnxRuntimeBackend().load(_small_maps_model(batch).SerializeToString()).predict({"input": x})[0]
        got = OnnxRuntimeBackend().load(_with_batch(wide, batch).SerializeToString()).predict({"input": x})[0]
        assert got.shape == want.shape == (batch, 8, 4, 4)
        assert np.abs(got - want).max() < 1e-5, batch


def test_openvino_float_compile_lays_small_maps_along_the_width_and_quantized_ones_not(tmp_path, monkeypatch):
    """The OpenVINO compile of a float model carries the rewrite into the IR (two Transposes per convolution), which
    then runs split over two streams with the original's outputs; a quantized model is compiled as it is."""
    import openvino as ov
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    x = np.random.default_rng(7).standard_normal((24, 3, 8, 8)).astype(np.float32)
    for qdq, transposes in ((False, 4), (True, 0)):
        src = tmp_path / f"small_{qdq}.onnx"
        onnx.save(_small_maps_model(24, qdq=qdq), str(src))
        xml = compile_cpu(src, tmp_path / f"small_{qdq}", "input:24,3,8,8", None, log=Log(True), engine="openvino",
                          precision_mode="force_fp32")
        ops = [op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ops()]
        assert ops.count("Transpose") == transposes, qdq
        backend = OpenVinoBackend().load(xml)
        assert backend.streams == 2
        want = OnnxRuntimeBackend().load(src).predict({"input": x})[0]
        assert np.abs(backend.predict({"input": x})[0] - want).max() < 1e-4, qdq


def test_openvino_is_imported_with_its_telemetry_declined():
    """import openvino sends usage data from a forked process unless declined; a fork beside the engines' threads
    hung the benchmark. The toolkit declines it for its own processes, and leaves the environment as it found it."""
    code = ("import os\nfrom poc.engines.openvino import openvino\nopenvino()\nimport openvino_telemetry\n"
            "print(openvino_telemetry.Telemetry().consent, 'CI' in os.environ)")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False", "False"]
