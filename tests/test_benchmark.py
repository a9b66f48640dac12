"""benchmark.sh on the CPU: the table, the CPU's rates, the end-to-end pairs, the sweep."""

import json
import os
import re

import pytest
from conftest import ROOT, run_script, tiny_model, write_bins

TXT_LINE = re.compile(r"^(-?\d+\.\d{6} ){100}\n$")


def test_cpu_benchmark_table_json_e2e_and_sweep_plot(tmp_path, demo_workdir):
    a = tiny_model(tmp_path / "a.onnx")
    b = tiny_model(tmp_path / "b.onnx")
    write_bins(tmp_path / "bins", 30)
    src = demo_workdir / "models" / "end2end.onnx"
    proc = run_script(["benchmark.sh", "--model", str(a), "--fp32_model", str(b), "--loop", "4", "--block", "2",
                       "--repeats", "1", "--e2e_input", "bins", "--sweep", "2", "--sweep_loop", "2", "--layers",
                       "--int8_source", str(src), "--fp32_source", str(src), "--aipp", str(ROOT / "aipp.conf")],
                      cwd=tmp_path)
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["cpu"]["int8"]["loops"] == 4 and report["cpu"]["fp32"]["loops"] == 4
    assert report["int8_speedup"] == pytest.approx(report["cpu"]["int8"]["throughput"] / report["cpu"]["fp32"]["throughput"])
    assert report["ascend_310p3_published"]["int8"]["throughput"] == 14290
    assert report["e2e_int8"]["files"] == 30 and report["e2e_int8"]["ratio_to_pure"] > 0
    io_cpu = report["e2e_int8"]["io_cpu_s"]  # the I/O threads' CPU time, as the run measured it
    assert set(io_cpu) == {"reader", "writer"} and all(set(t) == {"user", "kernel"} for t in io_cpu.values())
    assert io_cpu["writer"]["user"] + io_cpu["writer"]["kernel"] > 0  # it wrote 30 files
    assert "CPU time of that run's I/O threads: writer" in proc.stdout
    # the sweep: every engine at every precision it runs, each point with its spread over the rounds
    assert {"onnxruntime int8", "onnxruntime fp32", "openvino int8", "openvino fp32"} <= set(report["sweep"])
    for line in report["sweep"].values():
        assert [r["batch"] for r in line] == [2]
        assert all(r["throughput_min"] <= r["throughput"] * 1.0001 and len(r["throughput_rounds"]) == 1 for r in line)
    assert (tmp_path / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"INT8 speed-up over FP32 on the CPU: onnxruntime \d+\.\d\dx, openvino \d+\.\d\dx", proc.stdout)
    assert re.search(r"310P3 +INT8 +24 +14290", proc.stdout)
    # both engines side by side (the other engine's rows compiled from the sources), as fractions of the CPU's rates
    assert {"openvino int8", "openvino fp32", "openvino int8 (deploy model, no AIPP)"} <= set(report["cpu"])
    assert report["cpu"]["openvino int8"]["engine"] == "openvino" and report["cpu"]["int8"]["engine"] == "onnxruntime"
    assert set(report["int8_speedup_by_engine"]) == {"onnxruntime", "openvino"}
    limits = report["cpu_limits"]
    assert all(set(lim["probe_rounds"]) == {"onnxruntime", "openvino"} for p, lim in limits.items() if p != "bf16")
    assert report["gmac_per_image"] == pytest.approx(1.298, abs=0.01)  # the network's own multiply-adds
    for name, r in report["cpu"].items():  # two rounds of two runs; no row above the CPU's rate
        assert len(r["throughput_rounds"]) == 2 and r["throughput_min"] <= r["throughput_max"], name
        assert r["of_cpu_rate"] == pytest.approx(r["gmac_per_s"] / limits[r["precision"]]["gmac_per_s"])
        assert r["of_cpu_rate"] <= 1.0 + 1e-9 and r["gmac_per_s"] == pytest.approx(r["throughput"] * 1.298, rel=0.01)
    assert "the CPU's limits are" in proc.stdout and "rounds min-max" in proc.stdout
    # --layers: each engine's own INT8 model, layer by layer (the OpenVINO one has the demo network's convolutions)
    assert set(report["layers"]) == {"int8", "openvino int8"}
    ov_convs = [g for g in report["layers"]["openvino int8"]["groups"] if g["what"].startswith("conv ")]
    assert sum(g["layers"] for g in ov_convs) == 53 and "in its layers" in proc.stdout
    # the ais_bench-style summary of every model timed
    assert proc.stdout.count("[INFO] throughput 1000*batchsize.mean(24)") == len(report["cpu"])


def test_benchmark_recompiles_sweep_models_when_the_source_changes(demo_workdir, tmp_path):
    import shutil

    from poc.benchmark import compiled_for_batch
    src = tmp_path / "end2end.onnx"
    shutil.copy(demo_workdir / "models" / "end2end.onnx", src)
    first = compiled_for_batch(src, 2, tmp_path / "work", str(ROOT / "aipp.conf"), hw=32)
    made = first.stat().st_mtime_ns
    assert compiled_for_batch(src, 2, tmp_path / "work", str(ROOT / "aipp.conf"), hw=32).stat().st_mtime_ns == made  # reused
    os.utime(src, ns=(made + 10**9, made + 10**9))  # a newer source
    assert compiled_for_batch(src, 2, tmp_path / "work", str(ROOT / "aipp.conf"), hw=32).stat().st_mtime_ns != made
