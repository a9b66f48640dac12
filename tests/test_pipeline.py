"""pipeline.sh: the whole flow against a direct computation, re-runs, failures."""

import json
import os
import re

import numpy as np
import onnxruntime as ort
import torch
from conftest import MEAN_STD, ROOT, run_script

from poc.models.mmcls_resnet import build_model
from poc.shared.bins import normalise

TXT_LINE = re.compile(r"^(-?\d+\.\d{6} ){100}\n$")


# --- the whole pipeline ----------------------------------------------------------------------------------

def test_pipeline_end_to_end_matches_direct_computation(demo_data, demo_workdir, tmp_path):
    """The whole pipeline on ONNX Runtime against a direct computation; a re-run from inference; then the same run
    on OpenVINO from the compile stage on."""
    # the working folder's quant.cfg is the one the ModelZoo scripts read (as pipeline.sh does): 2 calibration batches
    (tmp_path / "quant.cfg").write_text((ROOT / "quant.cfg").read_text().replace("batch_num: 8", "batch_num: 2"))
    proc = run_script(["pipeline.sh", "--data", str(demo_data), "--checkpoint", str(demo_workdir / "models/demo.pth"),
                       "--quiet"], cwd=tmp_path)
    assert len(os.listdir(tmp_path / "amct_bin_data")) == 2  # the working folder's quant.cfg was the one read
    for stage in ("preprocess", "calib-data", "export", "quantize", "compile-int8", "compile-fp32", "infer-int8",
                  "postprocess-int8", "infer-fp32", "postprocess-fp32", "compare-outputs", "compare-layers", "report",
                  "summary"):
        assert f"==== [{stage}]" in proc.stdout
    # INT8 against FP32 image by image beside result.json, and layer by layer (msit's CSV), named in the summary
    per_image = (tmp_path / "compare_int8_fp32.csv").read_text().splitlines()
    assert per_image[0].startswith("Image,GoldenTop1,TargetTop1,Agree,CosineSimilarity") and len(per_image) == 1 + 300
    assert "per layer, INT8 vs FP32 (" in proc.stdout and "first below cosine 0.99: " in proc.stdout
    assert len(list((tmp_path / "compare").glob("*/result_*.csv"))) == 1 and "Per-layer comparison" in \
        (tmp_path / "report.html").read_text()
    assert "pipeline summary" in proc.stdout and "INT8 top-1 vs FP32: " in proc.stdout
    # the report beside result.json, with the FP32 comparison and the quantization figures; the summary names it
    report = (tmp_path / "report.html").read_text()
    assert "INT8 vs FP32</h2>" in report and "top-1 agreement over" in report and "FP32 vs INT8 on" in report
    assert "model models/resnet50_quant_bs24.onnx" in report and "engine CPU (onnxruntime " in report
    assert re.search(r"^  results report +\./report\.html$", proc.stdout, re.MULTILINE)
    labels = np.array([int(line.split()[1]) for line in (tmp_path / "img_label.txt").read_text().splitlines()])
    images = np.stack([np.fromfile(tmp_path / "bin_data" / f"img{i}.bin", np.uint8).reshape(32, 32, 3)
                       for i in range(len(labels))])
    # FP32: the PyTorch model on the normalised images
    model, _ = build_model(demo_workdir / "models/demo.pth", log=lambda *_: None)
    with torch.no_grad():
        probs = model(torch.from_numpy(normalise(images.transpose(0, 3, 1, 2), *MEAN_STD))).numpy()
    want_top1 = (probs.argmax(1) == labels).mean() * 100
    fp32 = json.loads((tmp_path / "result_fp32.json").read_text())
    assert fp32["value"][0] == {"key": "Number of images", "value": str(len(labels))}
    assert abs(fp32["metrics"]["top1"] - want_top1) <= 100 / len(labels) + 1e-9  # at most one near-tie differs
    # INT8: the compiled model run directly on the raw bins
    s = ort.InferenceSession(str(tmp_path / "models/resnet50_quant_bs24.onnx"), providers=["CPUExecutionProvider"])
    pad = (-len(images)) % 24
    batch = np.concatenate([images, np.repeat(images[:1], pad, 0)])
    int8_probs = np.concatenate([s.run(None, {"input": batch[i:i + 24]})[0] for i in range(0, len(batch), 24)])
    int8_top1 = (int8_probs[:len(labels)].argmax(1) == labels).mean() * 100
    res = json.loads((tmp_path / "result.json").read_text())
    assert abs(res["metrics"]["top1"] - int8_top1) <= 100 / len(labels) + 1e-9
    assert abs(res["metrics"]["top1"] - fp32["metrics"]["top1"]) <= 3.0
    assert re.search(r"^time per stage: check-weights \d+ s, preprocess \d+ s, calib-data \d+ s, "
                     r".*postprocess-fp32 \d+ s, compare-outputs \d+ s, compare-layers \d+ s, report \d+ s, "
                     r"summary \d+ s \(total \d+ s\)$", proc.stdout, re.MULTILINE), proc.stdout[-600:]
    # a re-run from inference: the earlier stages are skipped, their outputs used, the results the same
    models_before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "models").iterdir()}
    again = run_script(["pipeline.sh", "--data", str(demo_data), "--checkpoint", str(demo_workdir / "models/demo.pth"),
                        "--from", "infer", "--quiet"], cwd=tmp_path)
    for stage in ("preprocess", "calib-data", "export", "quantize", "compile-int8", "compile-fp32"):
        assert f"==== [{stage}] skipped (--from infer)" in again.stdout, stage
    assert "==== [infer-int8] " in again.stdout and "skipped" not in again.stdout.split("==== [infer-int8]")[1]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "models").iterdir()} == models_before
    assert json.loads((tmp_path / "result.json").read_text())["metrics"] == res["metrics"]
    assert re.search(r"^time per stage: check-weights \d+ s, infer-int8 \d+ s, postprocess-int8", again.stdout, re.MULTILINE)
    bad = run_script(["pipeline.sh", "--from", "nope"], cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "--from 'nope': not one of preprocess" in bad.stderr
    # the same run on OpenVINO from the compile stage on: its IRs, and a BF16 row (the NPU's FP16 counterpart)
    ov = run_script(["pipeline.sh", "--data", str(demo_data), "--checkpoint", str(demo_workdir / "models/demo.pth"),
                     "--engine", "openvino", "--from", "compile", "--quiet"], cwd=tmp_path)
    for stage in ("compile-int8", "compile-fp32", "compile-bf16", "infer-bf16", "postprocess-bf16"):
        assert f"==== [{stage}] " in ov.stdout and f"==== [{stage}] skipped" not in ov.stdout
    assert (tmp_path / "models" / "resnet50_quant_bs24.xml").is_file()
    rows = {line.split("(")[0].strip(): line for line in ov.stdout.splitlines() if "(bs24, AIPP)" in line}
    assert set(rows) == {"INT8", "BF16", "FP32"}
    assert "BF16 vs FP32 (" in ov.stdout and "INT8 speed-up over FP32 on the CPU (openvino)" in ov.stdout
    bf16 = json.loads((tmp_path / "result_bf16.json").read_text())["metrics"]["top1"]
    assert abs(bf16 - json.loads((tmp_path / "result_fp32.json").read_text())["metrics"]["top1"]) <= 3.0
    assert json.loads((tmp_path / "dst_summary.json").read_text())["device"].startswith("CPU (openvino ")


def test_pipeline_stops_at_failing_stage_with_its_exit_code(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test").write_bytes(b"garbage")
    proc = run_script(["pipeline.sh", "--data", "data", "--quiet"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "pipeline: stage 'preprocess' failed (exit code 2)" in proc.stderr
    assert "==== [calib-data]" not in proc.stdout


def test_pipeline_without_data_says_use_demo(tmp_path):
    proc = run_script(["pipeline.sh", "--quiet"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--demo" in proc.stderr and "==== [" not in proc.stdout


def test_pipeline_checks_a_given_checkpoint_before_its_first_stage(tmp_path, cifar100):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    proc = run_script(["pipeline.sh", "--data", str(cifar100), "--checkpoint", "bad.pth", "--quiet"], cwd=tmp_path,
                      check=False)
    assert proc.returncode == 2 and "pipeline: stage 'check-weights' failed (exit code 2)" in proc.stderr
    assert "bad.pth" in proc.stderr and "==== [preprocess]" not in proc.stdout
    assert not (tmp_path / "bin_data").exists()  # nothing was done before the check
