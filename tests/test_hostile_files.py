"""Hostile input, round 3: the MindSpore readers, Pet images, OpenVINO IRs, ais_bench's flags, several devices and
memory. One case per class of fault; each one works, or stops with one line naming the file and exit 2, never a
traceback, a hang, a partial output or more memory than the work needs."""
import copy
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import pytest
from conftest import ROOT, tiny_classifier_onnx, tiny_model, write_bins, write_cifar100
from onnx import TensorProto, helper

from poc.demo.lite_converter import from_onnx
from poc.formats.ms_ckpt import write_ckpt
from poc.formats.ms_lite import LiteGraph, LiteNode, LiteTensor, read_ms, write_ms
from poc.shared.errors import OutputSet

PLAIN, PETS = "ms-resnet50-plain-cifar10", "ms-resnet50-0.65x-pets"


def _one_line_exit_2(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-300:], proc.stderr[-2000:])
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, \
        proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def _run(args, cwd, timeout=120, limit_mb=None, fsize=None, **kw):
    """A top-level script in a subprocess, with a time bound and optionally an address-space or file-size cap."""
    script = ROOT / args[0]
    cmd = (["bash", str(script)] if script.suffix == ".sh" else [sys.executable, str(script)]) + list(args[1:])

    def limits():
        if limit_mb:
            resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))
        if fsize:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG, as on a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, preexec_fn=limits,
                          env=dict(os.environ, PYTHON=sys.executable), **kw)


def _hidden(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# --- .ms files: declared sizes, graphs that are not graphs ------------------------------------------------------

def _tiny_lite() -> LiteGraph:
    return from_onnx(tiny_classifier_onnx(), "1.1", "fc")


def _conv(graph):
    return next(n for n in graph.nodes if n.op == "Conv2D")


@pytest.mark.parametrize("case, message", [
    ("huge_input", "[1, 8000, 8000, 3]: 8000x8000 is larger than 32x32 (the profile's input)"),
    ("huge_pads", "pads [6000, 6000, 6000, 6000] for a 3x3 kernel"),
    ("int_max_dims", "data bytes do not match dims [2147483647, 3, 3, 3]"),
    ("overflowing_dims", "data bytes do not match dims"),
    ("no_nodes", "the graph has no nodes"),
    ("unwritten_output", "is written by no node"),
    ("negative_stride", "strides -2, 1"),
    ("negative_dims", "input tensor dims [1, -1, 8, 3]"),
    ("two_outputs", "1 inputs and 2 outputs"),
])
def test_ms_sizes_and_graphs_are_checked_before_anything_is_allocated(tmp_path, case, message):
    graph = _tiny_lite()
    if case == "huge_input":
        graph.tensors[graph.inputs[0]].dims = [1, 8000, 8000, 3]
    if case == "huge_pads":
        _conv(graph).fields.update(padUp=6000, padDown=6000, padLeft=6000, padRight=6000)
    if case in ("int_max_dims", "overflowing_dims"):
        w = graph.tensors[_conv(graph).inputs[1]]
        w.dims = [2**31 - 1, 3, 3, 3] if case == "int_max_dims" else [65536, 65536, 65536, 4]  # 2**64 values
    if case == "no_nodes":
        graph.nodes = []
    if case == "unwritten_output":
        graph.tensors.append(LiteTensor(len(graph.tensors), [], np.dtype(np.float32), "NC", 0, None))
        graph.outputs = [len(graph.tensors) - 1]
    if case == "negative_stride":
        _conv(graph).fields["strideH"] = -2
    if case == "negative_dims":
        graph.tensors[graph.inputs[0]].dims = [1, -1, 8, 3]
    if case == "two_outputs":
        graph.outputs = graph.outputs + [_conv(graph).outputs[0]]
    path = write_ms(graph, tmp_path / "bad.ms")
    proc = _run(["export_onnx.py", "--profile", PLAIN, "--model", str(path), "--work-dir", "out"], tmp_path,
                limit_mb=3000)
    _one_line_exit_2(proc, str(path), message)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_a_long_chain_in_reverse_order_sorts_in_linear_time(tmp_path):
    """20,000 nodes listed last to first: the quadratic sort took minutes; this one a fraction of a second."""
    n = 20_000
    tensors = [LiteTensor(i, [1, 2, 2, 3] if i == 0 else [], np.dtype(np.float32), "NHWC", 0, None) for i in range(n + 1)]
    nodes = [LiteNode(f"relu{i}", "Activation", {"type": 1, "alpha": 0.2}, [i], [i + 1]) for i in range(n)][::-1]
    path = write_ms(LiteGraph(tmp_path / "x", "MSL1", "MindSpore Lite 1.1.0", tensors, nodes, [0], [n]),
                    tmp_path / "chain.ms")
    t0 = time.perf_counter()
    graph = read_ms(path)
    assert time.perf_counter() - t0 < 5 and len(graph.nodes) == n


def test_ckpt_dims_that_overflow_or_disagree_with_the_content(tmp_path):
    from poc.formats.ms_ckpt import _Checkpoint
    msg = _Checkpoint()
    value = msg.value.add(tag="conv1.weight")
    # dims whose int64 product wraps around to 1 (274177 x 67280421310721 = 2**64 + 1): 4 bytes would "fit" them
    value.tensor.dims.extend([274177, 67280421310721])
    value.tensor.tensor_type, value.tensor.tensor_content = "Float32", np.ones(1, np.float32).tobytes()
    path = tmp_path / "bad.ckpt"
    path.write_bytes(msg.SerializeToString())
    proc = _run(["export_onnx.py", "--profile", PETS, "--checkpoint", str(path)], tmp_path)
    _one_line_exit_2(proc, str(path), "4 bytes do not match dims [274177, 67280421310721]")


def test_a_model_input_beyond_the_bound_is_refused_before_a_batch_is_allocated(tmp_path):
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "big",
                          [helper.make_tensor_value_info("input", TensorProto.UINT8, [24, 100000, 100000, 3])],
                          [helper.make_tensor_value_info("output", TensorProto.UINT8, [24, 100000, 100000, 3])])
    import onnx
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "big.onnx"))
    proc = _run(["infer.sh", "--model", "big.onnx", "--loop", "1"], tmp_path, limit_mb=3000)
    _one_line_exit_2(proc, "big.onnx", "more than the 1024 MiB the runner allows")


# --- files that block: refused before they are opened ---------------------------------------------------------

def _pets(root, names=("Abyssinian_1", "Bengal_1")):
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    from PIL import Image
    for name in names:
        Image.fromarray(np.full((240, 260, 3), 99, np.uint8)).save(root / "images" / f"{name}.jpg")
    (root / "annotations" / "test.txt").write_text("".join(
        f"{n} {1 if n.startswith('Aby') else 6} 1 1\n" for n in names))
    return root


@pytest.mark.parametrize("case", ["index", "split", "labels", "image", "ir_weights"])
def test_a_fifo_is_refused_and_never_waited_on(tmp_path, case):
    fifo = tmp_path / "fifo"
    if case == "index":
        ckpt = write_ckpt(tmp_path / "m.ckpt", {"end_point.weight": np.zeros((37, 2048), np.float32)})
        os.mkfifo(fifo)
        args = ["export_onnx.py", "--profile", PETS, "--checkpoint", str(ckpt), "--index", str(fifo)]
    if case in ("split", "image"):
        root = _pets(tmp_path / "pets")
        fifo = root / "annotations" / "fifo.txt" if case == "split" else root / "images" / "Bengal_1.jpg"
        if case == "image":
            fifo.unlink()
        os.mkfifo(fifo)
        args = ["preprocess_pets.py", "--src_path", str(root)] + (["--split", "fifo.txt"] if case == "split" else [])
    if case == "labels":
        (tmp_path / "dst").mkdir()
        (tmp_path / "dst" / "img0_0.txt").write_text("0.5 0.5 \n")
        os.mkfifo(fifo)
        args = ["postprocess.py", "dst", str(fifo), "./", "result.json"]
    if case == "ir_weights":
        (tmp_path / "m.xml").write_text("<net/>")
        fifo = tmp_path / "m.bin"
        os.mkfifo(fifo)
        args = ["infer.sh", "--model", "m.xml", "--loop", "1"]
    proc = _run(args, tmp_path, timeout=60)
    _one_line_exit_2(proc, {"labels": "fifo", "ir_weights": "m.bin"}.get(case, str(fifo)), "not a regular file")
    assert _hidden(tmp_path) == []  # no .bin_data.*.tmp or other temporaries


# --- memory that grows with what a file claims ------------------------------------------------------------------

def test_a_text_file_far_beyond_its_kind_is_refused_unread(tmp_path):
    with open(tmp_path / "index.txt", "wb") as f:
        f.truncate(200 << 20)  # 200 MB (sparse: costs no disk)
    ckpt = write_ckpt(tmp_path / "m.ckpt", {"end_point.weight": np.zeros((37, 2048), np.float32)})
    proc = _run(["export_onnx.py", "--profile", PETS, "--checkpoint", str(ckpt), "--index", "index.txt"], tmp_path,
                limit_mb=3000)
    _one_line_exit_2(proc, "index.txt", "209715200 bytes: more than the 1048576 allowed for the index file")


def _png_claiming(width, height) -> bytes:
    """A 16-bit RGB PNG whose header claims width x height (its pixel data is a few bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 7)) + chunk(b"IEND", b"")


def test_huge_images_are_refused_before_decoding(tmp_path):
    root = _pets(tmp_path / "pets")
    for name in ("Abyssinian_1", "Bengal_1"):
        (root / "images" / f"{name}.jpg").write_bytes(_png_claiming(9400, 9400))
    proc = _run(["preprocess_pets.py", "--src_path", str(root)], tmp_path, limit_mb=2000)
    _one_line_exit_2(proc, "9400x9400 pixels: more than the 36000000 a photo is allowed")
    assert _hidden(tmp_path) == [] and not (tmp_path / "bin_data").exists()


def test_scoring_wide_outputs_takes_memory_by_the_images_not_classes_squared(tmp_path):
    (tmp_path / "dst").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        np.save(tmp_path / "dst" / f"img{i}_0.npy", rng.random(12_000).astype(np.float32))
    (tmp_path / "img_label.txt").write_text("img0 5\nimg1 11999\n")
    proc = _run(["postprocess.py", "dst", "img_label.txt", "./", "result.json", "--quiet"], tmp_path, limit_mb=900)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "result.json").exists()


def test_threads_and_devices_are_capped_at_the_cores(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    proc = _run(["infer.sh", "--model", str(model), "--loop", "2", "--threads", "100000"], tmp_path, limit_mb=4000)
    assert proc.returncode == 0, proc.stderr
    cores = len(os.sched_getaffinity(0))
    assert f"--threads 100000: capped at the {cores} cores" in proc.stdout
    devices = ",".join(str(i) for i in range(32))
    proc = _run(["infer.sh", "--model", str(model), "--loop", "1", "--device", devices, "--output", "o",
                 "--output_dirname", "d"], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"32 devices ({devices}) on {min(32, cores)} worker processes" in proc.stdout
    assert sum(line.startswith("i:") for line in proc.stdout.splitlines()) == 32
    assert sorted(os.listdir(tmp_path / "o" / "d")) == sorted(
        [f"device{i}" for i in range(32)] + [f"device{i}_summary.json" for i in range(32)])


# --- ais_bench's flags, numbers and paths read strictly ---------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--output_batchsize_axis", "7", "--outfmt", "NPY"], "--output_batchsize_axis: 7: output 0 has 2 axes"),
    (["--output_batchsize_axis", "-9"], "--output_batchsize_axis: -9: must be 0 or more"),
    (["--device", "1_0"], "ASCII digits"),
    (["--device", "\u0663"], "ASCII digits"),
    (["--threads", "-1"], "--threads: -1"),
])
def test_runner_flags_out_of_range_are_one_line(tmp_path, flags, message):
    model = tiny_model(tmp_path / "m.onnx")
    write_bins(tmp_path / "in", 30)
    proc = _run(["infer.sh", "--model", str(model), "--input", "in", "--output", "o", "--output_dirname", "dst",
                 *flags], tmp_path)
    _one_line_exit_2(proc, message)
    assert not (tmp_path / "o" / "dst").exists() and _hidden(tmp_path) == []


def test_a_split_is_a_name_inside_annotations(tmp_path):
    root = _pets(tmp_path / "pets")
    proc = _run(["preprocess_pets.py", "--src_path", str(root), "--split", "../../../etc/passwd"], tmp_path)
    _one_line_exit_2(proc, "--split", "a file name inside annotations/")
    assert "root:" not in proc.stderr


def test_a_full_disk_names_the_file(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python", n_test=5)
    proc = _run(["preprocess_cifar100.py", "--src_path", "cifar-100-python/test", "--quiet"], tmp_path, fsize=1000)
    _one_line_exit_2(proc, "bin_data", "File too large")
    assert "error: error" not in proc.stderr and _hidden(tmp_path) == []
    model = tiny_model(tmp_path / "m.onnx")
    write_bins(tmp_path / "in", 30)
    proc = _run(["infer.sh", "--model", str(model), "--input", "in", "--output", "o", "--output_dirname", "dst",
                 "--outfmt", "TXT"], tmp_path, fsize=200)
    _one_line_exit_2(proc, "o/dst/img0_0.txt: File too large")
    assert _hidden(tmp_path) == []


# --- earlier rounds' leftovers --------------------------------------------------------------------------------

def _tuple1_bomb() -> bytes:
    return b"\x80\x02K\x00" + b"\x85" * 1_000_000 + b"."  # a one-element tuple of one ... a million deep, no MARK


def test_nesting_without_marks_is_bounded_in_a_pickle_and_in_a_pth(tmp_path):
    (tmp_path / "deep").write_bytes(_tuple1_bomb())
    _one_line_exit_2(_run(["preprocess_cifar100.py", "--src_path", "deep"], tmp_path), "deep", "nested more than 64")
    with zipfile.ZipFile(tmp_path / "deep.pth", "w") as z:
        z.writestr("archive/data.pkl", _tuple1_bomb())
        z.writestr("archive/version", "3\n")
    _one_line_exit_2(_run(["export_onnx.py", "--checkpoint", "deep.pth"], tmp_path), "deep.pth", "nested more than 64")


def test_a_pth_that_calls_an_unknown_codec(tmp_path):
    with zipfile.ZipFile(tmp_path / "codec.pth", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x07\x00\x00\x00nocodec"
                                       b"\x86R.")
        z.writestr("archive/version", "3\n")
    _one_line_exit_2(_run(["export_onnx.py", "--checkpoint", "codec.pth"], tmp_path), "codec.pth")


def test_a_label_of_two_to_the_seventy(tmp_path):
    d = {b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [2**70]}
    (tmp_path / "test").write_bytes(pickle.dumps(d, protocol=2))
    _one_line_exit_2(_run(["preprocess_cifar100.py", "--src_path", "test"], tmp_path),
                     "label 1180591620717411303424 of image 0 is outside 0..99")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "img0_0.txt").write_text("0.5 0.5 \n")
    (tmp_path / "labels.txt").write_text(f"img0 {2**70}\n")
    _one_line_exit_2(_run(["postprocess.py", "dst", "labels.txt", "./", "r.json"], tmp_path), "labels.txt", "line 1")


def test_a_zero_class_head(tmp_path):
    import torch

    from poc.models.mmcls_resnet import ImageClassifier
    sd = ImageClassifier(100).state_dict()
    sd["head.fc.weight"], sd["head.fc.bias"] = torch.zeros(0, 2048), torch.zeros(0)
    torch.save({"state_dict": sd}, tmp_path / "zero.pth")
    _one_line_exit_2(_run(["export_onnx.py", "--checkpoint", "zero.pth"], tmp_path), "zero.pth", "at least 2 classes")


class _Uninitialised:
    """Pickles to numpy's _reconstruct of a [1000000, 3072] uint8 array with no bytes behind it (148 bytes)."""

    def __reduce__(self):
        return np._core.multiarray._reconstruct, (np.ndarray, (1_000_000, 3072), np.dtype(np.uint8))


def test_a_tiny_pickle_claiming_a_million_images_names_the_file(tmp_path):
    (tmp_path / "test").write_bytes(pickle.dumps({b"data": _Uninitialised(), b"fine_labels": [0]}, protocol=2))
    assert (tmp_path / "test").stat().st_size < 300
    for limit in (None, 1500):  # the 3 GB allocation succeeds (never touched), or fails under a cap: one line either way
        proc = _run(["preprocess_cifar100.py", "--src_path", "test"], tmp_path, limit_mb=limit)
        _one_line_exit_2(proc, "test")
    assert "claims 1000000 images" in _run(["preprocess_cifar100.py", "--src_path", "test"], tmp_path).stderr


def test_an_interrupt_while_the_old_outputs_are_removed_leaves_nothing_behind(tmp_path, monkeypatch):
    import shutil
    (tmp_path / "pic").mkdir()
    for i in range(50):
        (tmp_path / "pic" / f"img{i}.png").write_bytes(b"old")
    real_rmtree, sent = shutil.rmtree, []

    def rmtree_then_signal(path, *a, **k):
        if not sent and str(path).endswith(".old"):
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal would be handled here if the removal were not protected
        return real_rmtree(path, *a, **k)

    monkeypatch.setattr(shutil, "rmtree", rmtree_then_signal)
    with pytest.raises(KeyboardInterrupt):
        with OutputSet({"pic": tmp_path / "pic"}, {}) as out:
            (out.folder(tmp_path / "pic", r"img[0-9]+\.png") / "img0.png").write_bytes(b"new")
    assert sent and os.listdir(tmp_path) == ["pic"] and os.listdir(tmp_path / "pic") == ["img0.png"]


# --- several devices: an interrupt reaches every worker, which leaves nothing behind ----------------------------

def _openvino_ir(onnx_path, xml_path):
    import openvino as ov
    ov.save_model(ov.Core().read_model(str(onnx_path)), str(xml_path))
    return xml_path


@pytest.mark.parametrize("engine, sig, target", [("onnxruntime", signal.SIGINT, "group"),
                                                 ("onnxruntime", signal.SIGTERM, "main"),
                                                 ("openvino", signal.SIGTERM, "group"),
                                                 ("openvino", signal.SIGINT, "main")])
def test_an_interrupt_during_a_multi_device_run(tmp_path, engine, sig, target):
    model = tiny_model(tmp_path / "m.onnx")
    if engine == "openvino":
        model = _openvino_ir(model, tmp_path / "m.xml")
    write_bins(tmp_path / "in", 480)
    proc = subprocess.Popen(["bash", str(ROOT / "infer.sh"), "--model", str(model), "--input", "in", "--output", "o",
                             "--output_dirname", "dst", "--outfmt", "TXT", "--device", "0,1", "--loop", "30000"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHON=sys.executable), start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not [p for p in _hidden(tmp_path) if ".device" in p]:
        time.sleep(0.01)
    time.sleep(0.3)  # the workers are inside their runs
    if target == "group":
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err == "error: interrupted\n", (proc.returncode, err[-2000:])
    assert _hidden(tmp_path) == [] and not (tmp_path / "o" / "dst" / "device0").exists()
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert left == []  # no orphaned worker


def test_the_fixtures_differ_from_valid_files():
    """The faults above are faults in otherwise valid files: the tiny graph itself translates."""
    from poc.formats.ms_lite_onnx import to_onnx
    graph = copy.deepcopy(_tiny_lite())
    assert to_onnx(graph).graph.output[0].name == "output"
