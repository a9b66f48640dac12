"""Seeded fuzzing of the .ms and .ckpt readers (tests/fuzz_readers.py) in a subprocess with its address space
capped: thousands of truncations, byte flips and length-field inflations, each a result or one line, fast."""
import json
import subprocess
import sys

from conftest import ROOT

CASES_PER_READER = 4000
MEMORY_MB = 1500  # the readers import numpy, onnx and protobuf; the files are a few KB


def test_fuzzed_ms_and_ckpt_files_are_read_or_refused_in_one_line():
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_readers.py"), "20261207", str(CASES_PER_READER),
                           str(MEMORY_MB)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["cases"] == 2 * CASES_PER_READER and report["failures"] == [], report
    assert report["refused"] > CASES_PER_READER  # the mutations do break files (most of them)
    assert report["read"] > 0  # and some survive: a flip inside a weight is still a model
