"""Nothing lost, nothing crashes: outputs never overwrite inputs, a user's files survive, interrupts leave the old
or the new outputs, hostile files get one line and exit 2; and the runner writes exactly what ais_bench writes."""
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, fake_ais_bench, run_script, tiny_model, write_bins, write_cifar100

from poc.shared.aisbench import format_txt
from poc.shared.bins import natural_key, read_labels
from poc.shared.errors import InputError, OutputSet


def _one_line_exit_2(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 1. never destroy what the user did not ask to replace -----------------------------------------------------

def test_infer_output_folder_that_is_the_input_is_refused(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    write_bins(tmp_path / "bin_data", 30)
    before = _tree(tmp_path / "bin_data")
    proc = run_script(["infer.sh", "--model", str(model), "--input", "./bin_data", "--output", "./",
                       "--output_dirname", "bin_data"], cwd=tmp_path, check=False)
    _one_line_exit_2(proc, "refused")
    assert _tree(tmp_path / "bin_data") == before
    proc = run_script(["infer.sh", "--model", str(model), "--input", "./bin_data", "--output", "./",
                       "--output_dirname", "."], cwd=tmp_path, check=False)
    _one_line_exit_2(proc, "--output_dirname")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporaries


def test_infer_keeps_the_users_files_and_drops_only_its_own_stale_outputs(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    write_bins(tmp_path / "in", 30)
    args = ["--model", str(model), "--input", "in", "--output", "o", "--output_dirname", "dst", "--outfmt", "TXT",
            "--quiet"]
    run_script(["infer.sh", *args], cwd=tmp_path)
    (tmp_path / "o" / "dst" / "notes.md").write_text("mine")
    (tmp_path / "o" / "dst" / "sub").mkdir()
    (tmp_path / "o" / "dst" / "sub" / "x.txt").write_text("mine too")
    for i in range(5, 30):
        (tmp_path / "in" / f"img{i}.bin").unlink()
    run_script(["infer.sh", *args], cwd=tmp_path)
    names = sorted(os.listdir(tmp_path / "o" / "dst"))
    assert names == sorted([f"img{i}_0.txt" for i in range(5)] + ["notes.md", "sub"])
    assert (tmp_path / "o" / "dst" / "notes.md").read_text() == "mine"
    assert (tmp_path / "o" / "dst" / "sub" / "x.txt").read_text() == "mine too"


@pytest.mark.parametrize("flags, what", [
    (["--bin_path", "./cifar-100-python"], "--bin_path contains --src_path"),
    (["--bin_path", "./cifar-100-python/test"], "--bin_path is --src_path"),
    (["--pic_path", "./bin_data"], "--pic_path is --bin_path"),
    (["--label_path", "./bin_data/labels.txt"], "--label_path lies inside --bin_path"),
])
def test_preprocess_outputs_that_overlap_inputs_or_each_other(cifar100, tmp_path, flags, what):
    before = _tree(cifar100)
    proc = run_script(["preprocess_cifar100.py", "--src_path", "./cifar-100-python/test", *flags], cwd=tmp_path,
                      check=False)
    _one_line_exit_2(proc, what)
    assert _tree(cifar100) == before
    assert not (tmp_path / "bin_data").exists() and not (tmp_path / "img_label.txt").exists()


def test_create_quant_data_into_the_data_set_folder_is_refused(cifar100, tmp_path):
    before = _tree(cifar100)
    proc = run_script(["create_quant_data.py", "--src_path", "cifar-100-python/train", "--save_path", "cifar-100-python",
                       "--batch_num", "1"], cwd=tmp_path, check=False)
    _one_line_exit_2(proc, "--save_path contains --src_path")
    assert _tree(cifar100) == before


def test_preprocess_keeps_the_users_files_in_its_output_folders(cifar100, tmp_path):
    (tmp_path / "bin_data").mkdir()
    (tmp_path / "bin_data" / "README").write_text("keep me")
    (tmp_path / "bin_data" / "img99.bin").write_bytes(b"stale")
    run_script(["preprocess_cifar100.py", "--src_path", str(cifar100 / "test"), "--limit", "3", "--quiet"],
               cwd=tmp_path)
    assert sorted(os.listdir(tmp_path / "bin_data")) == ["README", "img0.bin", "img1.bin", "img2.bin"]


def test_an_empty_data_set_is_an_error(tmp_path):
    cifar_dir = tmp_path / "c"
    cifar_dir.mkdir()
    with open(cifar_dir / "test", "wb") as f:
        pickle.dump({b"data": np.zeros((0, 3072), np.uint8), b"fine_labels": []}, f, protocol=2)
    proc = run_script(["preprocess_cifar100.py", "--src_path", str(cifar_dir / "test")], cwd=tmp_path, check=False)
    _one_line_exit_2(proc, "holds no images")
    assert not (tmp_path / "bin_data").exists()


def test_output_set_swap_is_not_cut_by_a_signal(tmp_path, monkeypatch):
    """A SIGINT that arrives between two swaps waits until both are done: the new set, whole."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "img0.bin").write_bytes(b"old")
    real_replace = os.replace
    sent = []

    def replace_then_signal(src, dst):
        real_replace(src, dst)
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal would be handled here if it were not held back

    monkeypatch.setattr(os, "replace", replace_then_signal)
    with pytest.raises(KeyboardInterrupt):
        with OutputSet({"a": tmp_path / "a", "b": tmp_path / "b"}, {}) as out:
            for name in ("a", "b"):
                (out.folder(tmp_path / name, r"img[0-9]+\.bin") / "img0.bin").write_bytes(b"new")
    assert (tmp_path / "a" / "img0.bin").read_bytes() == b"new" == (tmp_path / "b" / "img0.bin").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]  # nothing hidden left behind


def test_sigterm_midway_leaves_the_previous_outputs_and_no_temporaries(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python", n_test=3000)
    run_script(["preprocess_cifar100.py", "--src_path", "cifar-100-python/test", "--limit", "50", "--quiet"],
               cwd=tmp_path)
    before = {d: _tree(tmp_path / d) for d in ("bin_data", "pic")} | {"l": (tmp_path / "img_label.txt").read_bytes()}
    proc = subprocess.Popen([sys.executable, str(ROOT / "preprocess_cifar100.py"), "--src_path",
                             "cifar-100-python/test"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 30
    while time.time() < deadline and not any(p.startswith(".pic.") for p in os.listdir(tmp_path)):
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "error: interrupted\n"
    after = {d: _tree(tmp_path / d) for d in ("bin_data", "pic")} | {"l": (tmp_path / "img_label.txt").read_bytes()}
    assert after == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


# --- 2. every bad input: one line, exit 2 ------------------------------------------------------------------------

def test_deeply_nested_and_billion_laughs_pickles(tmp_path):
    deep = tmp_path / "deep"
    deep.write_bytes(b"\x80\x02" + b"(" * 1_000_000 + b"l" * 1_000_000 + b".")
    _one_line_exit_2(run_script(["preprocess_cifar100.py", "--src_path", str(deep)], cwd=tmp_path, check=False),
                     "nested more than")
    x = [0] * 10
    for _ in range(8):
        x = [x] * 10  # 10^9 integers if expanded
    laughs = tmp_path / "laughs"
    laughs.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": x}, protocol=2))
    assert laughs.stat().st_size < 10_000
    t0 = time.time()
    _one_line_exit_2(run_script(["preprocess_cifar100.py", "--src_path", str(laughs)], cwd=tmp_path, check=False),
                     "is not a list of integers")
    assert time.time() - t0 < 30


def test_unknown_codec_in_a_pickle(tmp_path):
    bad = tmp_path / "codec"
    bad.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x07\x00\x00\x00nocodec\x86R.")
    _one_line_exit_2(run_script(["preprocess_cifar100.py", "--src_path", str(bad)], cwd=tmp_path, check=False),
                     "corrupt pickle")


@pytest.mark.parametrize("case", ["nan_conv", "inf_bias"])
def test_non_finite_weights_are_refused_and_nothing_is_written(tmp_path, case):
    from poc.models.mmcls_resnet import ImageClassifier
    sd = ImageClassifier(100).state_dict()
    if case == "nan_conv":
        sd["backbone.layer2.0.conv2.weight"][0, 0, 0, 0] = float("nan")
    else:
        sd["head.fc.bias"][3] = float("inf")
    torch.save({"state_dict": sd}, tmp_path / "bad.pth")
    proc = run_script(["export_onnx.py", "--checkpoint", "bad.pth"], cwd=tmp_path, check=False)
    _one_line_exit_2(proc, "NaN or infinite")
    assert not (tmp_path / "models" / "end2end.onnx").exists()


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint\n"])
def test_empty_or_text_checkpoint_is_not_sent_to_trust(tmp_path, content):
    (tmp_path / "c.pth").write_bytes(content)
    proc = run_script(["export_onnx.py", "--checkpoint", "c.pth"], cwd=tmp_path, check=False)
    _one_line_exit_2(proc, "c.pth")
    assert "--trust_checkpoint" not in proc.stderr


@pytest.mark.parametrize("line, field", [
    ("var_reci_chn_1: 0", "var_reci_chn_1"), ("var_reci_chn_0: nan", "var_reci_chn_0"),
    ("var_reci_chn_2: inf", "var_reci_chn_2"), ("min_chn_0: 1e39", "min_chn_0"), ("mean_chn_1: 300", "mean_chn_1"),
])
def test_aipp_values_that_cannot_normalise_are_refused_with_their_line(tmp_path, line, field):
    conf = tmp_path / "a.conf"
    base = (ROOT / "aipp.conf").read_text()
    key = line.split(":")[0]
    lines = [ln for ln in base.splitlines() if not ln.strip().startswith(key + ":")]
    lines.insert(-1, f"    {line}")
    conf.write_text("\n".join(lines) + "\n")
    expect_line = next(i for i, ln in enumerate(lines, 1) if ln.strip().startswith(key + ":"))
    with pytest.raises(InputError, match=rf"line {expect_line}: {field} "):
        from poc.formats.aipp import parse_aipp
        parse_aipp(conf)


@pytest.mark.parametrize("ifmr, message", [
    ("search_step: nan", "finite"), ("search_range_end: inf", "finite"), ("search_range_end: 1e12", "<= 100"),
    ("search_step: 1e-6", "clip factors"),
])
def test_quant_cfg_values_that_would_exhaust_memory(tmp_path, ifmr, message):
    (tmp_path / "q.cfg").write_text(f"batch_num: 1\ncommon_config {{ ifmr_quantize {{ {ifmr} }} }}\n")
    proc = run_script(["quantize.sh", "--calibration_config", "q.cfg"], cwd=tmp_path, env={"POC_BACKEND": "cpu"},
                      check=False)
    _one_line_exit_2(proc, "q.cfg", message)


def test_paths_through_files_loops_devices_and_folders(tmp_path, cifar100):
    (tmp_path / "plain").write_text("x")
    os.symlink("loop", tmp_path / "loop")
    cases = [
        (["preprocess_cifar100.py", "--src_path", "plain/test"], "plain/test"),
        (["preprocess_cifar100.py", "--src_path", "loop"], "loop"),
        (["preprocess_cifar100.py", "--src_path", "/dev/null"], "/dev/null"),
        (["preprocess_cifar100.py", "--src_path", str(cifar100 / "test"), "--bin_path", "plain/bins"], "plain"),
        (["create_quant_data.py", "--src_path", "/dev/zero", "--batch_num", "1"], "/dev/zero"),
    ]
    for args, needle in cases:
        _one_line_exit_2(run_script(args, cwd=tmp_path, check=False), needle)
    os.mkfifo(tmp_path / "fifo")
    proc = subprocess.run([sys.executable, str(ROOT / "preprocess_cifar100.py"), "--src_path", "fifo"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    _one_line_exit_2(proc, "not a regular file")


def test_runner_inputs_that_are_not_what_they_say(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.npy").write_bytes(b"\x93NUMPY garbage")
    _one_line_exit_2(run_script(["infer.sh", "--model", str(model), "--input", "a"], cwd=tmp_path, check=False),
                     "x.npy")
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "b" / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _one_line_exit_2(run_script(["infer.sh", "--model", str(model), "--input", "b"], cwd=tmp_path, check=False),
                     "x.npy")


def test_unicode_digits_in_names_sort_and_do_not_crash(tmp_path):
    assert sorted(["img10.bin", "img1²2.bin", "img2.bin", "IMG3.BIN"], key=natural_key) == \
        ["img1²2.bin", "img2.bin", "IMG3.BIN", "img10.bin"]
    model = tiny_model(tmp_path / "m.onnx")
    imgs = write_bins(tmp_path / "in", 3)
    os.rename(tmp_path / "in" / "img1.bin", tmp_path / "in" / "img1²2.bin")
    os.rename(tmp_path / "in" / "img2.bin", tmp_path / "in" / "IMG2.BIN")
    run_script(["infer.sh", "--model", str(model), "--input", "in", "--output", "o", "--output_dirname", "d",
                "--outfmt", "NPY", "--quiet"], cwd=tmp_path)
    assert sorted(os.listdir(tmp_path / "o" / "d")) == ["IMG2_0.npy", "img0_0.npy", "img1²2_0.npy"]
    assert np.array_equal(np.load(tmp_path / "o" / "d" / "IMG2_0.npy")[0], imgs[2].reshape(-1)[:100])


@pytest.mark.parametrize("text, message", [
    ("img0 --5\n", "line 1"), ("img0 ²\n", "line 1"), ("img0 -1\n", "line 1"),
])
def test_label_lines_that_are_not_labels(tmp_path, text, message):
    (tmp_path / "l.txt").write_text(text)
    with pytest.raises(InputError, match=message):
        read_labels(tmp_path / "l.txt")
    (tmp_path / "l.txt").write_bytes(b"img0 \xff\xfe\n")
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        read_labels(tmp_path / "l.txt")


def test_postprocess_bad_outputs_and_result_path(tmp_path):
    (tmp_path / "dst").mkdir()
    (tmp_path / "l.txt").write_text("img0 1\n")
    np.save(tmp_path / "dst" / "img0_0.npy", np.zeros(3, dtype=[("a", "<f4"), ("b", "<f4")]))
    _one_line_exit_2(run_script(["postprocess.py", "dst", "l.txt", "./", "r.json"], cwd=tmp_path, check=False),
                     "img0_0.npy", "not a numeric array")
    (tmp_path / "dst" / "img0_0.npy").unlink()
    (tmp_path / "dst" / "img0_0.bin").write_bytes(b"\0" * 10)
    _one_line_exit_2(run_script(["postprocess.py", "dst", "l.txt", "./", "r.json"], cwd=tmp_path, check=False),
                     "not a whole number of float32 values")
    (tmp_path / "dst" / "img0_0.bin").write_bytes(np.arange(10, dtype=np.float32).tobytes())
    (tmp_path / "r.json").mkdir()
    _one_line_exit_2(run_script(["postprocess.py", "dst", "l.txt", "./", "r.json"], cwd=tmp_path, check=False),
                     "r.json", "is a folder")


def test_create_quant_data_outside_the_repository_uses_the_shipped_config(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python", n_test=30, n_train=24 * 8)
    proc = run_script(["create_quant_data.py", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 0 and len(os.listdir(tmp_path / "amct_bin_data")) == 8  # batch_num of ./quant.cfg
    proc = run_script(["create_quant_data.py"], cwd=tmp_path)
    assert "calibration config: the one that ships with the scripts" in proc.stdout


# --- 3. exactly what the real tools write --------------------------------------------------------------------

def test_result_values_as_the_modelzoo_writes_them():
    from poc.scoring import modelzoo_percent
    for frac, want in ((0.57, "57.0%"), (0.125, "12.5%"), (0.7855, "78.55%"), (1.0, "100.0%"), (2 / 3, "66.67%")):
        assert modelzoo_percent(frac * 100) == str(round(frac * 100, 2)) + "%" == want


def test_integer_outputs_are_written_with_percent_d():
    assert format_txt(np.array([[1, -2, 3]], np.int64)) == b"1 -2 3 \n"
    assert format_txt(np.array([[0.5, 2.0]], np.float32)) == b"0.500000 2.000000 \n"


def test_txt_outputs_are_printf_exact_on_every_path():
    """ais_bench's '%f ' text, byte for byte, whichever way format_txt takes: digit arithmetic for values in
    [0, 10), printf-style for the rest (negatives, -0.0, 10 and up, NaN and infinities, halves it cannot be sure of)."""
    def printf(a):
        rows = a.reshape(-1, a.shape[-1])
        return "".join("".join(f"{v:f} " for v in row) + "\n" for row in rows.tolist()).encode()  # "%f "
    rng = np.random.default_rng(11)
    softmax = rng.dirichlet(np.ones(100), 48).astype(np.float32)
    halves = np.array([(k + 0.5) / 1e6 for k in range(0, 9_999_999, 97_531)], np.float32)
    near_halves = np.concatenate([np.nextafter(halves, 0), halves, np.nextafter(halves, 1)]).astype(np.float32)
    cases = [softmax, softmax.astype(np.float64), softmax.astype(np.float16),
             near_halves.reshape(-1, 3), np.float32(2.0) ** -np.arange(1, 31, dtype=np.float32).reshape(5, 6),
             np.array([[0.0, 9.999999, 9.9999995, 1e-7, 4.9999e-7, 5.0001e-7, 1.0]], np.float32),
             rng.uniform(0, 10, (64, 37)).astype(np.float32),   # every value 9 bytes
             np.array([[0.5, -0.0]], np.float32), np.array([[0.25, 10.0]], np.float32),
             np.array([[-1.5, 2.0]], np.float32), np.array([[0.5, np.nan]], np.float32),
             np.array([[np.inf, 0.5]], np.float32), rng.normal(0, 30, (8, 10)).astype(np.float32)]
    for a in cases:
        assert format_txt(a) == printf(a), a
    assert format_txt(softmax[:1]).count(b" ") == 100 and len(format_txt(softmax[:1])) == 901
    from poc.shared.aisbench import _txt_of_digits  # the digit path is the one taken for a softmax, and only where it may be
    assert _txt_of_digits(softmax) is not None and _txt_of_digits(near_halves.reshape(-1, 3)) is None
    assert _txt_of_digits(np.array([[0.5, -0.0]], np.float32)) is None


def test_every_ais_bench_flag_is_accepted_and_handed_on_unchanged(tmp_path):
    env = fake_ais_bench(tmp_path, "import json, sys\nprint('ARGS=' + json.dumps(sys.argv[1:]))\n")
    (tmp_path / "m.om").write_bytes(b"om")
    flags = ["--display_all_summary", "true", "--run_mode", "array", "--output_batchsize_axis", "1", "--debug",
             "false", "--dymBatch", "4", "--dymHW", "32,32", "--dymDims", "input:1,3", "--dymShape", "input:1,3",
             "--dymShape_range", "input:1~4,3", "--outputSize", "1000", "--auto_set_dymshape_mode", "0",
             "--auto_set_dymdims_mode", "0", "--profiler", "false", "--dump", "false", "--acl_json_path", "a.json",
             "--device", "0,1", "--warmup_count", "2", "--loop", "3", "--batchsize", "24"]
    args = ["--model", "m.om", "--input", "bin_data", "--output", "./", *flags]
    proc = run_script(["infer.sh", *args, "--quiet"], cwd=tmp_path, env=env)
    assert json.loads(proc.stdout.split("ARGS=", 1)[1]) == args
    # the CPU runner accepts them too and says which do nothing on a CPU
    model = tiny_model(tmp_path / "m.onnx")
    write_bins(tmp_path / "bin_data", 5)
    cpu_flags = [f for f in flags if f not in ("1", "--output_batchsize_axis", "--device", "0,1")]
    proc = run_script(["infer.sh", "--model", str(model), "--input", "bin_data", *cpu_flags], cwd=tmp_path)
    assert "do nothing on the CPU: --debug, --run_mode," in proc.stdout
    assert "[INFO] H2D_latency (ms)" in proc.stdout and "[INFO] D2H_latency (ms)" in proc.stdout


def test_h2d_d2h_lines_only_with_display_all_summary(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    proc = run_script(["infer.sh", "--model", str(model)], cwd=tmp_path)
    assert "NPU_compute_time (ms)" in proc.stdout and "H2D_latency" not in proc.stdout


def test_loop_with_input_runs_every_batch_n_times(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    write_bins(tmp_path / "in", 50)
    run_script(["infer.sh", "--model", str(model), "--input", "in", "--output", "o", "--output_dirname", "d",
                "--loop", "3", "--quiet"], cwd=tmp_path)
    s = json.loads((tmp_path / "o" / "d_summary.json").read_text())
    assert s["NPU_compute_time"]["count"] == 3 * 3 and len(os.listdir(tmp_path / "o" / "d")) == 50


def test_output_batchsize_axis_splits_outputs_on_that_axis(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    # output [100, 24]: the batch on axis 1
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
             helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["head"]),
             helper.make_node("Cast", ["head"], ["c"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["c"], ["output"], perm=[1, 0])]
    inits = [numpy_helper.from_array(np.array([24, 3072], np.int64), "shape"),
             numpy_helper.from_array(np.array([0], np.int64), "starts"),
             numpy_helper.from_array(np.array([100], np.int64), "ends"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("input", TensorProto.UINT8, [24, 32, 32, 3])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [100, 24])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "t.onnx"))
    images = write_bins(tmp_path / "in", 24)
    run_script(["infer.sh", "--model", "t.onnx", "--input", "in", "--output", "o", "--output_dirname", "d",
                "--outfmt", "NPY", "--output_batchsize_axis", "1", "--quiet"], cwd=tmp_path)
    got = np.load(tmp_path / "o" / "d" / "img5_0.npy")
    assert got.shape == (100, 1) and np.array_equal(got[:, 0], images[5].reshape(-1)[:100])


def test_multi_device_workers_write_what_one_worker_writes(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    write_bins(tmp_path / "in", 75)  # 4 batches: 2 each
    run_script(["infer.sh", "--model", str(model), "--input", "in", "--output", "one", "--output_dirname", "d",
                "--outfmt", "TXT", "--quiet"], cwd=tmp_path)
    proc = run_script(["infer.sh", "--model", str(model), "--input", "in", "--output", "two", "--output_dirname", "d",
                       "--outfmt", "TXT", "--device", "0,1"], cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("i:")]
    assert len(lines) == 2 and all(re.fullmatch(r"i:[01] device_[01] throughput:[\d.e+-]+ start_time:[\d.]+ "
                                                 r"end_time:[\d.]+", ln) for ln in lines)
    total = float(re.search(r"\[INFO\] summary throughput:([\d.e+-]+)", proc.stdout).group(1))
    assert total == pytest.approx(sum(float(ln.split("throughput:")[1].split()[0]) for ln in lines))
    assert re.search(r"end to end: [\d.]+ images/s over [\d.]+ s \(75 files read, outputs in two/d/device\{0,1\}/",
                     proc.stdout), proc.stdout
    single = {p.name: p.read_bytes() for p in (tmp_path / "one" / "d").iterdir()}
    multi = {p.name: p.read_bytes() for dev in ("device0", "device1") for p in (tmp_path / "two" / "d" / dev).iterdir()}
    assert multi == single and len(single) == 75
    assert sorted(os.listdir(tmp_path / "two" / "d" / "device0")) == sorted(f"img{i}_0.txt" for i in range(48))
    for dev in (0, 1):  # ais_bench's summary per device, beside its folder
        s = json.loads((tmp_path / "two" / "d" / f"device{dev}_summary.json").read_text())
        assert s["NPU_compute_time"]["count"] == 2 and len(s["filesinfo"]) == (48 if dev == 0 else 27)
    proc = run_script(["infer.sh", "--model", str(model), "--device", "0,0"], cwd=tmp_path, check=False)
    _one_line_exit_2(proc, "--device")


def test_input_file_deleted_mid_run_and_unwritable_outputs(tmp_path, cifar100):
    from poc.runner import read_input
    with pytest.raises(InputError, match="disappeared during the run"):
        read_input(str(tmp_path / "gone.bin"), np.dtype(np.uint8))
    # a location that cannot be written (the tests run as root, whom a chmod does not stop: /proc refuses anyone)
    proc = run_script(["preprocess_cifar100.py", "--src_path", str(cifar100 / "test"), "--bin_path",
                       "/proc/poc_no_such_dir/bins"], cwd=tmp_path, check=False)
    _one_line_exit_2(proc, "/proc/poc_no_such_dir")
    assert not (tmp_path / "img_label.txt").exists()
