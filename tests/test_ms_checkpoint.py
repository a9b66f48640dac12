"""MindSpore checkpoints and ResNet50-0.65x: .ckpt round trips in both layouts, every fault one line, index.txt
faults, and the exported graph (scatter folded) equal to the scattered network."""
import zlib

import numpy as np
import onnx
import pytest
import torch
from conftest import ROOT, run_script

from poc.formats.ms_ckpt import read_ckpt, write_ckpt
from poc.models.pruned_resnet import PrunedResNet50, fold_scatter, ms_name, pruned_widths, read_index
from poc.shared.errors import InputError

INDEX = ROOT / "profiles" / "ms-resnet50-0.65x-pets" / "index.txt"
PETS = "ms-resnet50-0.65x-pets"


@pytest.mark.parametrize("version", ["1.x", "2.x"])
def test_ckpt_round_trip(tmp_path, version):
    rng = np.random.default_rng(0)
    params = {"a.weight": rng.standard_normal((300, 500)).astype(np.float32),  # 600 kB: sliced at 64 kB
              "step": np.array(7, np.int32), "u8": np.arange(5, dtype=np.uint8), "h": np.ones(3, np.float16),
              "i64": np.array([-1, 2], np.int64)}
    path = write_ckpt(tmp_path / "c.ckpt", params, version, slice_bytes=64 << 10)
    raw = path.read_bytes()
    assert (raw[-17:-10] == b"crc_num") == (version == "2.x")
    assert (b"UInt8" in raw) == (version == "2.x") and (b"Uint8" in raw) == (version == "1.x")
    ck = read_ckpt(path)
    assert ck.crc == ("verified" if version == "2.x" else "none")
    assert list(ck.params) == list(params)
    for k, v in params.items():
        assert ck.params[k].shape == v.shape and ck.params[k].dtype == v.dtype and np.array_equal(ck.params[k], v)


def test_bfloat16_values_read_as_float32(tmp_path):
    from poc.formats.ms_ckpt import _Checkpoint
    x = np.array([1.5, -2.25, 3.0], np.float32)
    msg = _Checkpoint()
    v = msg.value.add(tag="w")
    v.tensor.dims.extend([3])
    v.tensor.tensor_type = "BFloat16"
    v.tensor.tensor_content = (x.view(np.uint32) >> 16).astype("<u2").tobytes()
    (tmp_path / "b.ckpt").write_bytes(msg.SerializeToString())
    assert np.array_equal(read_ckpt(tmp_path / "b.ckpt").params["w"], x)


@pytest.mark.parametrize("case, message", [
    ("wrong_crc", "CRC mismatch"),
    ("truncated", "not a MindSpore checkpoint"),
    ("not_protobuf", "it may be encrypted"),
    ("empty", "an empty file"),
    ("unknown_dtype", "tensor type 'Int4' is not read"),
    ("size_mismatch", "bytes do not match dims [4, 4]"),
])
def test_ckpt_faults_are_one_line(tmp_path, case, message):
    path = write_ckpt(tmp_path / "c.ckpt", {"w": np.ones((4, 4), np.float32), "v": np.zeros(1000, np.float32)}, "2.x")
    raw = path.read_bytes()
    if case == "wrong_crc":
        path.write_bytes(raw[:10] + bytes([raw[10] ^ 1]) + raw[11:])
    if case == "truncated":
        body = raw[:-17][:-1500]
        path.write_bytes(body + b"crc_num" + zlib.crc32(body).to_bytes(10, "big"))
    if case == "not_protobuf":
        path.write_bytes(bytes(range(256)) * 4)
    if case == "empty":
        path.write_bytes(b"")
    if case in ("unknown_dtype", "size_mismatch"):
        from poc.formats.ms_ckpt import _Checkpoint
        msg = _Checkpoint()
        v = msg.value.add(tag="w")
        v.tensor.dims.extend([4, 4])
        v.tensor.tensor_type = "Int4" if case == "unknown_dtype" else "Float32"
        v.tensor.tensor_content = b"\0" * (8 if case == "unknown_dtype" else 60)
        path.write_bytes(msg.SerializeToString())
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_ckpt(path)
    proc = run_script(["export_onnx.py", "--profile", PETS, "--checkpoint", str(path)], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda ls: ls[:15], "15 lines, expected 16"),
    (lambda ls: [ls[0].replace(ls[0].split()[0], "x7")] + ls[1:], "line 1: 'x7' is not a channel index"),
    (lambda ls: [ls[0] + " 5"] + ls[1:], "line 1: 168 indices, expected 167"),
    (lambda ls: [" ".join(["9999"] + ls[0].split()[1:])] + ls[1:], "line 1: index 9999 is outside the block's 256"),
    (lambda ls: [" ".join([ls[0].split()[1]] + ls[0].split()[1:])] + ls[1:], "line 1: an index appears twice"),
])
def test_index_faults(tmp_path, edit, message):
    lines = INDEX.read_text().splitlines()
    (tmp_path / "i.txt").write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(InputError, match=message):
        read_index(tmp_path / "i.txt")


def test_the_real_index_and_the_network_it_defines():
    index = read_index(INDEX)
    assert [len(i) for i in index] == [167] * 3 + [333] * 4 + [666] * 6 + [1332] * 3
    assert [pruned_widths(c) for c in (64, 128, 256, 512)] == [(42, 167), (84, 333), (167, 666), (333, 1332)]
    model = PrunedResNet50(index)
    names = [ms_name(k) for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert len(names) == 267 and names[:2] == ["conv1.weight", "bn1.gamma"]
    assert "layer1.0.down_sample_layer.1.moving_variance" in names and names[-2:] == ["end_point.weight", "end_point.bias"]
    weights = sum(p.numel() for p in model.parameters())
    bn_stats = sum(m.running_mean.numel() * 2 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert weights + bn_stats == 12_681_544  # MindSpore counts the moving statistics as parameters
    assert tuple(model.state_dict()["layer1.0.conv3.weight"].shape) == (167, 42, 1, 1)


@pytest.fixture(scope="module")
def pets_checkpoint(tmp_path_factory):
    index = read_index(INDEX)
    torch.manual_seed(0)
    model = PrunedResNet50(index).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.normal_(0, 0.1)
            m.weight.data.uniform_(0.2, 0.5)
            m.bias.data.normal_(0, 0.1)
    params = {ms_name(k): v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    params["moments.end_point.weight"] = np.zeros((37, 2048), np.float32)
    params["global_step"] = np.array(3, np.int32)
    path = write_ckpt(tmp_path_factory.mktemp("pets") / "pets.ckpt", params, "1.x")
    return model, path


def test_folded_network_equals_the_scattered_one(pets_checkpoint):
    model, _ = pets_checkpoint
    x = torch.randn(3, 3, 64, 64)  # batch 3: the fold is batch-safe, unlike MindSpore's ScatterNd
    import copy
    with torch.no_grad():
        scattered = model(x)
        folded = fold_scatter(copy.deepcopy(model))(x)
    assert torch.abs(scattered - folded).max() <= 1e-5
    blk = fold_scatter(copy.deepcopy(model)).layer2[1]
    assert blk.conv3.out_channels == 512 and blk.bn3.weight[~np.isin(np.arange(512), blk.index.numpy())].abs().max() == 0


def test_export_of_a_pets_checkpoint(pets_checkpoint, tmp_path):
    model, path = pets_checkpoint
    proc = run_script(["export_onnx.py", "--profile", PETS, "--checkpoint", str(path)], cwd=tmp_path)
    assert "matches the published asset index.txt" in proc.stdout and "ignored 2 values" in proc.stdout
    m = onnx.load(str(tmp_path / PETS / "models" / "end2end.onnx"))
    assert "ScatterND" not in {n.op_type for n in m.graph.node}
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [11]
    from poc.engines.onnxruntime import OnnxRuntimeBackend
    x = np.random.default_rng(1).standard_normal((2, 3, 96, 96)).astype(np.float32)
    got = OnnxRuntimeBackend().load(tmp_path / PETS / "models" / "end2end.onnx").predict({"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()  # the scattered network, softmax
    assert got.shape == (2, 37) and np.abs(got - want).max() <= 1e-4
    # a checkpoint whose shapes do not fit the index
    wrong = tmp_path / "wrong_index.txt"
    lines = INDEX.read_text().splitlines()
    wrong.write_text("\n".join(lines[:3] + [" ".join(lines[3].split()[:-1])] + lines[4:]) + "\n")
    proc = run_script(["export_onnx.py", "--profile", PETS, "--checkpoint", str(path), "--index", str(wrong)],
                      cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "line 4: 332 indices, expected 333" in proc.stderr
