"""MindSpore Lite .ms models: files as the 1.0 / 1.1 converters wrote them (made here by the project's writer),
read back, translated to end2end.onnx and checked against PyTorch; every malformed file is one line and exit 2."""
import copy
import dataclasses
import hashlib
import io
import re
import struct

import numpy as np
import onnx
import pytest
import torch
from conftest import run_script, tiny_classifier_onnx
from onnx import TensorProto, helper

from poc.demo.lite_converter import from_onnx
from poc.engines.onnxruntime import OnnxRuntimeBackend
from poc.formats import ms_lite
from poc.formats.ms_lite import read_ms, write_ms
from poc.formats.ms_lite_onnx import evaluate, to_onnx
from poc.models.plain_resnet import PlainResNet50
from poc.models.torch_onnx import torchscript_export


def _one_line_exit_2(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def plain():
    """The shortcut-free ResNet-50 with realistic BN statistics, and its ONNX export (BN folded, as the converter
    received it)."""
    torch.manual_seed(0)
    model = PlainResNet50(10, softmax=False).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.normal_(0, 0.1)
            m.weight.data.uniform_(0.5, 1.0)
    buf = io.BytesIO()
    torchscript_export(model, buf, 11, "logits", {"input": {0: "batch"}}, 32)
    return model, onnx.load_from_string(buf.getvalue())


def test_plain_resnet50_is_the_published_architecture(plain):
    model, _ = plain
    assert sum(p.numel() for p in model.parameters()) == 23_503_946
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 52


def _with_flatten(model: onnx.ModelProto) -> onnx.ModelProto:
    """The export with ``torch.flatten`` instead of the authors' ``view``: the Shape ... Reshape chain as one ONNX
    Flatten (what the Lite parser turns into a Reshape with a shape attribute)."""
    m = copy.deepcopy(model)
    chain = [n for n in m.graph.node if n.op_type in ("Shape", "Constant", "Gather", "Unsqueeze", "Concat", "Reshape")]
    reshape = next(n for n in chain if n.op_type == "Reshape")
    flat = helper.make_node("Flatten", [reshape.input[0]], [reshape.output[0]], axis=1, name="flatten")
    nodes = [flat if n is reshape else n for n in m.graph.node if n is reshape or n not in chain]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


# Every form the 1.0 / 1.1 converters can write for this network: format nodes of either generation, either head,
# the flatten as a computed shape (the authors' view) or as a Reshape attribute [1,-1] / [0,-1], file or
# breadth-first node order.
FORMS = [("1.0", "matmul", "view", "file"), ("1.1", "fc", (0, -1), "bfs"), ("1.1", "matmul", "view", "bfs"),
         ("1.0", "fc", (1, -1), "bfs"), ("1.1", "matmul", (1, -1), "file")]


@pytest.mark.parametrize("generation, head, flatten, order", FORMS)
def test_converted_files_translate_to_the_pytorch_model(plain, tmp_path, generation, head, flatten, order):
    model, exported = plain
    source = exported if flatten == "view" else _with_flatten(exported)
    graph = from_onnx(source, generation, head, flatten_shape=(1, -1) if flatten == "view" else flatten, order=order)
    path = write_ms(graph, tmp_path / "m.ms")
    raw = path.read_bytes()
    assert (raw[4:8] == b"MSL1") == (generation == "1.1")
    graph = read_ms(path)
    ops = [n.op for n in graph.nodes]
    assert ("Nhwc2Nchw" in ops) == (generation == "1.0") and ("Transpose" in ops) == (generation == "1.1")
    assert ("FullConnection" in ops) == (head == "fc") and ("MatMul" in ops) == (head == "matmul")
    reshape = next(n for n in graph.nodes if n.op == "Reshape")
    if flatten == "view":  # the chain, and what the converter's shape inference left after it: no dims, type 7
        assert {"Shape", "Gather", "Unsqueeze", "Concat"} <= set(ops) and reshape.fields["shape"] is None
        assert graph.tensors[graph.outputs[0]].dtype is None and graph.tensors[graph.outputs[0]].dims == []
        assert raw.count(struct.pack("<i", 7)) > 0
        if generation == "1.1":  # one Transpose per edge that reads the pool
            pool = next(n for n in graph.nodes if n.op == "Pooling")
            assert sum(n.op == "Transpose" and n.inputs == pool.outputs for n in graph.nodes) == 2
    else:
        assert reshape.fields["shape"] == list(flatten) and len(reshape.inputs) == 1
    names = [n.name for n in graph.nodes]
    projection = next(i for i, n in enumerate(names) if "shortcut" in n)
    if order == "bfs":  # the 1.1 converter's order: a shortcut's projection right after the block's conv1
        assert names[projection - 1].endswith("conv1/Conv"), names[projection - 2:projection + 1]
    else:
        assert names[projection - 1].endswith("conv3/Conv")
    conv = next(n for n in graph.nodes if n.op == "Conv2D")
    assert graph.tensors[conv.inputs[1]].format == "KHWC" and len(conv.inputs) == 3  # the bias as a third input
    onnx_model = to_onnx(graph)
    onnx.checker.check_model(onnx_model, full_check=True)
    assert [o.version for o in onnx_model.opset_import] == [11] and "ScatterND" not in {n.op_type for n in onnx_model.graph.node}
    onnx.save(onnx_model, str(tmp_path / "m.onnx"))
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    got = OnnxRuntimeBackend().load(tmp_path / "m.onnx").predict({"input": x})[0]  # a batch of 3: batch-safe
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    assert got.shape == (3, 10) and np.abs(got - want).max() <= 1e-4
    # the independent numpy run of the Lite graph agrees too
    logits = evaluate(graph, x[:1].transpose(0, 2, 3, 1))[graph.outputs[0]][0]
    assert np.allclose(np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum(), got[0], atol=1e-5)


def test_export_onnx_from_a_ms_file(plain, tmp_path):
    _, exported = plain
    write_ms(from_onnx(exported, "1.1", "matmul"), tmp_path / "residual_distill.ms")
    proc = run_script(["export_onnx.py", "--model", "residual_distill.ms"], cwd=tmp_path)
    assert "differs from every published asset" in proc.stdout and "parity ONNX Runtime vs the .ms graph" in proc.stdout
    m = onnx.load(str(tmp_path / "models" / "end2end.onnx"))
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["output"]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert m.graph.node[-1].op_type == "Softmax"


def test_published_asset_is_recognised_by_its_sha256(tmp_path, monkeypatch):
    from poc import config
    from poc.export import published_verdict
    f = tmp_path / "x.ms"
    f.write_bytes(b"published bytes")
    monkeypatch.setitem(config.PUBLISHED_ASSETS_SHA256, "x.ms", hashlib.sha256(b"published bytes").hexdigest())
    assert "matches the published asset x.ms" in published_verdict(f)


# --- malformed files -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return tiny_classifier_onnx()


def _export(tmp_path, path):
    return run_script(["export_onnx.py", "--model", str(path), "--work-dir", str(tmp_path / "out")], cwd=tmp_path,
                      check=False)


def test_tiny_file_reads_and_translates(tiny, tmp_path):
    path = write_ms(from_onnx(tiny, "1.1", "fc"), tmp_path / "t.ms")
    proc = _export(tmp_path, path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("case, message", [
    ("root_out_of_bounds", "outside the"),
    ("truncated", "not a valid MindSpore Lite model"),
    ("msl2", "MindSpore Lite >= 1.2 model (identifier MSL2)"),
    ("empty", "not a valid MindSpore Lite model: 0 bytes"),
    ("unknown_primitive", "primitive type 200 is not handled"),
    ("data_length", "data bytes do not match dims"),
    ("cycle", "the nodes form a cycle"),
    ("quantized", "is quantized (quantParams)"),
    ("bad_perm", "perm [0, 1, 3, 2]"),
    ("big_reshape", "only the flatten of a 1x1 map is batch-safe"),
])
def test_malformed_ms_files_are_one_line(tiny, tmp_path, monkeypatch, case, message):
    graph = from_onnx(tiny, "1.1", "fc")
    path = tmp_path / "bad.ms"
    if case == "unknown_primitive":
        monkeypatch.setitem(ms_lite.PRIMITIVE_TYPES, "Reshape", 200)
        monkeypatch.setitem(ms_lite.PRIMITIVES, 200, ("Reshape", ms_lite.PRIMITIVES[18][1]))
    if case == "data_length":
        const = next(t for t in graph.tensors if t.data is not None and t.data.ndim == 4)
        const.dims = [const.dims[0] + 1, *const.dims[1:]]
    if case == "cycle":
        graph.nodes[0].inputs[0] = graph.nodes[-1].outputs[0]
    if case == "quantized":
        next(t for t in graph.tensors if t.data is not None).quant_scale = 0.5
    if case == "bad_perm":
        t = next(n for n in graph.nodes if n.op == "Transpose")
        t.fields = dict(t.fields, perm=[0, 1, 3, 2])
    if case == "big_reshape":  # a reshape of the 8x8 conv output, not of the pooled 1x1 map
        reshape = next(n for n in graph.nodes if n.op == "Reshape")
        conv = next(n for n in graph.nodes if n.op == "Conv2D")
        graph = copy.deepcopy(graph)
        reshape = next(n for n in graph.nodes if n.op == "Reshape")
        reshape.inputs = [conv.outputs[0]]
        graph.nodes = [n for n in graph.nodes if n.op not in ("Pooling", "Transpose")]
        fc = next(n for n in graph.nodes if n.op == "FullConnection")
        w = graph.tensors[fc.inputs[1]]
        w.data = np.zeros((5, 4 * 8 * 8), np.float32)
        w.dims = list(w.data.shape)
    write_ms(graph, path)
    monkeypatch.undo()
    raw = path.read_bytes()
    if case == "root_out_of_bounds":
        path.write_bytes((len(raw) + 100).to_bytes(4, "little") + raw[4:])
    if case == "truncated":
        path.write_bytes(raw[: len(raw) // 3])
    if case == "msl2":
        path.write_bytes(raw[:4] + b"MSL2" + raw[8:])
    if case == "empty":
        path.write_bytes(b"")
    proc = _export(tmp_path, path)
    _one_line_exit_2(proc, str(path))
    assert re.search(re.escape(message), proc.stderr), proc.stderr
    assert not (tmp_path / "out" / "end2end.onnx").exists()


def test_garbage_never_crashes_the_reader(tmp_path):
    """Random corruptions of a valid file: every outcome is a graph or one InputError, never another exception."""
    from poc.shared.errors import InputError
    rng = np.random.default_rng(0)
    graph = from_onnx(
        helper.make_model(helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "g",
                                            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 2, 2])],
                                            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])])),
        "1.1", "fc")
    good = write_ms(graph, tmp_path / "g.ms").read_bytes()
    for _ in range(300):
        raw = bytearray(good)
        for pos in rng.integers(0, len(raw), rng.integers(1, 8)):
            raw[pos] = int(rng.integers(0, 256))
        (tmp_path / "x.ms").write_bytes(bytes(raw))
        try:
            read_ms(tmp_path / "x.ms")
        except InputError:
            pass


def _random_topological_order(graph, rng):
    """The nodes in a random order that still writes every tensor before it is read."""
    known = set(graph.inputs) | {t.index for t in graph.tensors if t.data is not None}
    pending, order = list(graph.nodes), []
    while pending:
        ready = [n for n in pending if all(t in known for t in n.inputs)]
        node = ready[int(rng.integers(len(ready)))]
        order.append(node)
        known.update(node.outputs)
        pending.remove(node)
    return order


def test_any_topological_order_gives_the_same_model(plain, tmp_path):
    """The importer and its numpy check follow the data flow only: a valid file's nodes shuffled into other
    topological orders translate to the same outputs, bit for bit, and evaluate to the same values."""
    _, exported = plain
    graph = from_onnx(exported, "1.1", "matmul", order="bfs")
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    results = []
    rng = np.random.default_rng(0)
    # the file's order, its reverse (not even topological: the reader sorts) and three random topological orders
    orders = [graph.nodes, graph.nodes[::-1]] + [_random_topological_order(graph, rng) for _ in range(3)]
    for k, nodes in enumerate(orders):
        path = tmp_path / f"o{k}.ms"
        write_ms(dataclasses.replace(graph, nodes=list(nodes)), path)
        read = read_ms(path)
        assert [n.name for n in read.nodes] == [n.name for n in nodes]
        onnx.save(to_onnx(read), str(tmp_path / f"o{k}.onnx"))
        got = OnnxRuntimeBackend().load(tmp_path / f"o{k}.onnx").predict({"input": x})[0]
        ref = evaluate(read, x[:1].transpose(0, 2, 3, 1))[read.outputs[0]]
        results.append((got, ref))
    assert len({tuple(n.name for n in o) for o in orders}) == len(orders)  # the orders do differ
    for got, ref in results[1:]:
        assert np.array_equal(got, results[0][0]) and np.array_equal(ref, results[0][1])


def _view_tiny():
    """A tiny classifier that flattens with x.view(x.size(0), -1), as exported (the chain of the real file)."""
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Linear(4, 5)

        def forward(self, x):
            x = torch.relu(self.conv(x)).mean(dim=(2, 3), keepdim=True)
            return self.fc(x.view(x.size(0), -1))
    torch.manual_seed(0)
    buf = io.BytesIO()
    torchscript_export(Tiny(), buf, 11, "logits", {"input": {0: "batch"}}, hw=8)
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("change, message", [
    ("gather_channels", "target shape [4, -1] is not a flatten [batch, -1]"),
    ("minus_one_first", "is not a flatten [batch, -1]"),
    ("three_dims", "is not a flatten [batch, -1]"),
    ("float_gather", "Gather): a float input where a shape computation was expected"),
    ("gather_out_of_range", "indices [7] outside a 4-vector"),
])
def test_a_shape_chain_that_is_not_a_flatten_is_refused(tmp_path, change, message):
    graph = from_onnx(_view_tiny(), "1.1", "fc", order="bfs")
    gather = next(n for n in graph.nodes if n.op == "Gather")
    concat = next(n for n in graph.nodes if n.op == "Concat")
    index, tail = graph.tensors[gather.inputs[1]], graph.tensors[concat.inputs[1]]
    if change == "gather_channels":  # dim 1 of the NCHW pool: the channel count, not the batch
        index.data = np.array(1, np.int32)
    if change == "minus_one_first":
        concat.inputs = concat.inputs[::-1]
    if change == "three_dims":
        tail.data, tail.dims = np.array([-1, 1], np.int32), [2]
    if change == "float_gather":
        gather.inputs[0] = next(n for n in graph.nodes if n.op == "Transpose").outputs[0]
    if change == "gather_out_of_range":
        index.data = np.array(7, np.int32)
    path = write_ms(graph, tmp_path / "bad.ms")
    proc = _export(tmp_path, path)
    _one_line_exit_2(proc, str(path), message)
    assert not (tmp_path / "out" / "end2end.onnx").exists()


def test_the_view_chain_exports_with_unset_types(tmp_path):
    graph = from_onnx(_view_tiny(), "1.1", "matmul", order="bfs")
    untyped = [t for t in graph.tensors if t.data is None and t.dtype is None]
    assert graph.outputs[0] in [t.index for t in untyped] and len(untyped) == 2  # the Reshape's and the head's
    proc = _export(tmp_path, write_ms(graph, tmp_path / "t.ms"))
    assert proc.returncode == 0, proc.stderr
    m = onnx.load(str(tmp_path / "out" / "end2end.onnx"))
    ops = [n.op_type for n in m.graph.node]
    assert "Flatten" in ops and not {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape"} & set(ops)
