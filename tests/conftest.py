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

from poc import cifar, sample  # noqa: E402


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


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """The built-in demo set, small: 6 train and 3 test images per class."""
    out = tmp_path_factory.mktemp("demo") / "cifar-100-python"
    sample.write_demo_dataset(out, train_per_class=6, test_per_class=3, seed=1, log=lambda *_: None)
    return out


def dump_pickle(path: Path, obj, protocol=2):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path
