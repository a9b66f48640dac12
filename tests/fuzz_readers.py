"""Seeded fuzzing of the MindSpore readers: truncations, byte flips and length-field inflations of a valid ``.ms``
and a valid ``.ckpt``, each read (and the ``.ms`` checked and translated) in this process.

    python tests/fuzz_readers.py SEED COUNT MEMORY_MB

Run by ``test_fuzz.py`` in a subprocess whose address space is capped (``resource.setrlimit``) at MEMORY_MB. Every
case must end in a graph / checkpoint or in one ``InputError`` of one line, within ``SECONDS_PER_CASE``. Prints one
JSON line: the counts, and the first few failures (kind, mutation, exception) if any.
"""
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from poc.demo.lite_converter import from_onnx  # noqa: E402
from poc.formats.ms_ckpt import read_ckpt, write_ckpt  # noqa: E402
from poc.formats.ms_lite import read_ms, write_ms  # noqa: E402
from poc.formats.ms_lite_onnx import to_onnx  # noqa: E402
from poc.shared.errors import InputError  # noqa: E402

SECONDS_PER_CASE = 2.0
INFLATED = (0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0x10000000, 0xFFFF, 1 << 20)


def sample_ms(folder: Path) -> bytes:
    """A small classifier with every op form a converted file holds: conv+relu, a shortcut add, pool, the view
    flatten's shape chain, matmul + bias, softmax; written as the 1.1 converter does (MSL1, breadth-first)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w1", (4, 3, 3, 3)), ("b1", (4,)), ("w2", (4, 4, 1, 1)), ("fw", (5, 4)), ("fb", (5,)))]
    inits += [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([-1], np.int64),
                                                                                              "minus_one")]
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
             helper.make_node("Add", ["c2", "r1"], ["s"], name="add"),
             helper.make_node("GlobalAveragePool", ["s"], ["p"], name="pool"),
             helper.make_node("Shape", ["p"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0, name="gather"),
             helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0], name="unsqueeze"),
             helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0, name="concat"),
             helper.make_node("Reshape", ["p", "target"], ["f"], name="reshape"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1, name="fc"),
             helper.make_node("Softmax", ["logits"], ["prob"], axis=1, name="softmax")]
    graph = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    return write_ms(from_onnx(model, "1.1", "matmul", order="bfs"), folder / "sample.ms").read_bytes()


def sample_ckpt(folder: Path) -> bytes:
    rng = np.random.default_rng(1)
    params = {"conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
              "bn1.gamma": np.ones(4, np.float32), "global_step": np.array(7, np.int32),
              "end_point.weight": rng.standard_normal((5, 40)).astype(np.float16)}
    return write_ckpt(folder / "sample.ckpt", params, "2.x", slice_bytes=256).read_bytes()


def mutations(good: bytes, rng: np.random.Generator, count: int):
    """(name, bytes): a third truncations, a third 1-8 byte flips, a third a 4-byte field set to a large length."""
    for k in range(count):
        raw = bytearray(good)
        if k % 3 == 0:
            cut = int(rng.integers(0, len(raw)))
            yield f"truncate@{cut}", bytes(raw[:cut])
        elif k % 3 == 1:
            spots = rng.integers(0, len(raw), int(rng.integers(1, 9)))
            for pos in spots:
                raw[pos] = int(rng.integers(0, 256))
            yield f"flip@{sorted(int(p) for p in spots)[:3]}", bytes(raw)
        else:
            pos = int(rng.integers(0, max(1, len(raw) - 4)))
            value = INFLATED[k % len(INFLATED)] if k % 2 else len(raw) + int(rng.integers(1, 64))
            raw[pos:pos + 4] = int(value).to_bytes(4, "little")
            yield f"inflate@{pos}={value}", bytes(raw)


def main() -> int:
    seed, count, memory_mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    rng = np.random.default_rng(seed)
    report = {"cases": 0, "refused": 0, "read": 0, "slowest_s": 0.0, "failures": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        readers = {"ms": (sample_ms(folder), lambda p: to_onnx(read_ms(p), 8)), "ckpt": (sample_ckpt(folder), read_ckpt)}
        for kind, (good, read) in readers.items():
            path = folder / f"case.{kind}"
            for name, raw in mutations(good, rng, count):
                path.write_bytes(raw)
                t0 = time.perf_counter()
                try:
                    read(path)
                    report["read"] += 1
                except InputError as err:
                    report["refused"] += 1
                    if "\n" in str(err) or not str(err).startswith(str(path)):
                        report["failures"].append([kind, name, f"not one line naming the file: {str(err)[:200]!r}"])
                except BaseException as err:  # noqa: BLE001 - what the test is looking for
                    report["failures"].append([kind, name, f"{type(err).__name__}: {str(err)[:200]}"])
                took = time.perf_counter() - t0
                report["slowest_s"] = max(report["slowest_s"], took)
                if took > SECONDS_PER_CASE:
                    report["failures"].append([kind, name, f"took {took:.1f} s"])
                report["cases"] += 1
    report["failures"] = report["failures"][:10]
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
