"""Shared fixtures: small data sets in exactly the CIFAR python-pickle formats, made on the fly."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poc import profiles  # noqa: E402
from poc.demo import datasets  # noqa: E402
from poc.formats import cifar  # noqa: E402

# the default profile's normalisation (mean, std on the 0..255 scale, RGB), for tests that normalise by hand
MEAN_STD = (profiles.get(None).mean_rgb_255, profiles.get(None).std_rgb_255)

# `make test-quick` leaves out the slow tests: those marked @pytest.mark.slow, every test that needs one of these
# session fixtures (each builds a demo model or a ResNet-50), and every test that starts another process (below).
SLOW_FIXTURES = {"demo_workdir", "both_engines", "exported", "pets_checkpoint", "plain", "quantized", "compiled_fp32"}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: more than a few seconds; `make test-quick` leaves it out")


# A test that starts another process (a script, a stage, a worker) pays for an interpreter and its imports of torch,
# ONNX and ONNX Runtime, about two seconds each on these machines: slow too.
STARTS_A_PROCESS = ("run_script(", "subprocess.", "_run(", "Popen(")


def pytest_collection_modifyitems(config, items):
    import inspect
    for item in items:
        source = inspect.getsource(item.function) if hasattr(item, "function") else ""
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(s in source for s in STARTS_A_PROCESS):
            item.add_marker(pytest.mark.slow)


def run_script(args, cwd, env=None, check=True):
    """Run a top-level script (``foo.py`` with python, ``foo.sh`` with bash) and capture its output."""
    script = ROOT / args[0]
    cmd = (["bash", str(script)] if script.suffix == ".sh" else [sys.executable, str(script)]) + list(args[1:])
    full_env = dict(os.environ, PYTHON=sys.executable, **(env or {}))
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def write_cifar100(folder: Path, n_test=50, n_train=0, seed=0, num_classes=100):
    """A CIFAR-100 folder (test, optional train, meta) with random images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("test", n_test), ("train", n_train)):
        if n:
            labels = rng.integers(0, num_classes, n)
            cifar.write_split(folder / name, rng.integers(0, 256, (n, 3072), dtype=np.uint8), labels)
    cifar.write_meta(folder / "meta", [f"class{i}" for i in range(100)], [f"super{i}" for i in range(20)])
    return folder


@pytest.fixture
def cifar100(tmp_path):
    return write_cifar100(tmp_path / "cifar-100-python", n_test=50, n_train=200)


def built_once(tmp_path_factory, name: str, build, shared: bool = False) -> Path:
    """``build(folder)`` into ``{basetemp}/{name}`` once per test process, and the folder. A pytest-xdist worker tears
    its fixtures down (session ones too) whenever its queue of tests runs dry, and would build an expensive one
    again for the next test that needs it; on disk it survives that. ``shared``: built once for all the workers (the
    first to need it builds, under a lock) and copied into each worker's own folder, which its tests may change."""
    import fcntl
    import shutil
    folder = tmp_path_factory.getbasetemp() / name
    done = folder.with_name(f"{name}.built")  # beside it: a test may list the folder
    if done.is_file():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    if not shared:
        folder.mkdir(parents=True)
        build(folder)
    else:
        root = tmp_path_factory.getbasetemp()
        common = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "shared-builds"
        common.mkdir(exist_ok=True)
        with open(common / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (common / f"{name}.built").is_file():
                shutil.rmtree(common / name, ignore_errors=True)  # a build that failed halfway
                (common / name).mkdir()
                build(common / name)
                (common / f"{name}.built").write_text("")
        shutil.copytree(common / name, folder, copy_function=shutil.copy2)
    done.write_text("")
    return folder


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """The built-in demo set, small: 6 train and 3 test images per class."""
    return built_once(tmp_path_factory, "demo", lambda d: datasets.write_demo_dataset(
        d / "cifar-100-python", train_per_class=6, test_per_class=3, seed=1, log=lambda *_: None), shared=True) \
        / "cifar-100-python"


class CodeRunningPayload:
    """Pickles to a call of open(target, "w"): loading it would create ``target``."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def dump_pickle(path: Path, obj, protocol=2):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory, demo_data):
    """A work folder after stages 1-3 on the small demo set: bin_data/, img_label.txt, amct_bin_data/ (2 batches),
    models/demo.pth (the demo checkpoint) and models/end2end.onnx; plus quant.cfg and aipp.conf copies."""
    def build(work):
        import shutil

        from poc.demo.weights import make_demo_model
        from poc.shared.progress import Log
        run_script(["preprocess_cifar100.py", "--src_path", str(demo_data / "test"), "--no_pic", "--quiet"], cwd=work)
        (work / "quant.cfg").write_text((ROOT / "quant.cfg").read_text().replace("batch_num: 8", "batch_num: 2"))
        shutil.copy(ROOT / "aipp.conf", work / "aipp.conf")
        run_script(["create_quant_data.py", "--src_path", str(demo_data / "train"), "--quiet"], cwd=work)
        acc = make_demo_model(demo_data, work / "models" / "demo.pth", seed=0, bn_images=128, log=Log(True))
        run_script(["export_onnx.py", "--checkpoint", "models/demo.pth", "--quiet"], cwd=work)
        (work / "demo_fp32_top1.txt").write_text(f"{acc}\n")
    return built_once(tmp_path_factory, "work", build, shared=True)


def fake_tool(bin_dir: Path, name: str, body: str) -> Path:
    """A recording stand-in for an Ascend tool: appends its argv (JSON) to {bin_dir}/{name}.calls, then runs body."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"""#!{sys.executable}
import json, sys, pathlib
with open({str(bin_dir / (name + '.calls'))!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
{body}
""")
    path.chmod(0o755)
    return path


def tool_calls(bin_dir: Path, name: str) -> list:
    import json
    calls = bin_dir / f"{name}.calls"
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def env_with_path(bin_dir: Path, **extra) -> dict:
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", **extra}


def tiny_model(path: Path, batch=24, classes=100) -> Path:
    """A tiny compiled-model stand-in with the OM's interface: uint8 NHWC [batch,32,32,3] -> float [batch,classes],
    whose output row is the first ``classes`` bytes of its image, so each output file can be traced to its input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes = [
        helper.make_node("Reshape", ["input", "shape"], ["flat"]),
        helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["head"]),
        helper.make_node("Cast", ["head"], ["output"], to=TensorProto.FLOAT),
    ]
    inits = [numpy_helper.from_array(np.array([batch, 3072], np.int64), "shape"),
             numpy_helper.from_array(np.array([0], np.int64), "starts"),
             numpy_helper.from_array(np.array([classes], np.int64), "ends"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.UINT8, [batch, 32, 32, 3])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def write_bins(folder: Path, n: int, seed=0, prefix="img", npy=False) -> np.ndarray:
    """``n`` random uint8 HWC images as ``{prefix}{i}.bin`` (raw) or ``.npy`` files; returns the images."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    for i in range(n):
        if npy:
            np.save(folder / f"{prefix}{i}.npy", images[i])
        else:
            (folder / f"{prefix}{i}.bin").write_bytes(images[i].tobytes())
    return images


def identity_model(h, w):
    """float NCHW [n,3,h,w] in, the same out: with AIPP folded in front, its output is what enters the network."""
    import onnx  # noqa: F401
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "id",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, h, w])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, h, w])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def fake_ais_bench(tmp_path: Path, main_body: str) -> dict:
    """A stand-in ``ais_bench`` package (``python -m ais_bench`` runs ``main_body``); returns the env that finds it."""
    pkg = tmp_path / "mods" / "ais_bench"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(main_body)
    return {"PYTHONPATH": str(tmp_path / "mods")}


def tiny_classifier_onnx():
    """A tiny classifier as an exporter writes it (conv+relu, global pool, flatten, fc; input [1,3,8,8], 5 logits):
    small .ms files for the fault cases."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w", (4, 3, 3, 3)), ("b", (4,)), ("fw", (5, 4)), ("fb", (5,)))]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1, name="fc")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
