"""Stage 6 (infer.sh: the CPU runner and the ais_bench hand-off), stage 7 (postprocess.py), stage 8 (benchmark.sh)
and the whole pipeline."""
import json
import re

import numpy as np
import pytest
from conftest import fake_ais_bench, run_script, tiny_model, write_bins

from poc.scoring import result_json, worst_classes
from poc.shared.errors import InputError
from poc.shared.progress import Log

TXT_LINE = re.compile(r"^(-?\d+\.\d{6} ){100}\n$")


def _run(tmp_path, *args, check=True):
    return run_script(["infer.sh", *args], cwd=tmp_path, check=check)


# --- runner ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [49, 72, 50])
def test_runner_batches_padding_names_and_txt(tmp_path, n):
    model = tiny_model(tmp_path / "m.onnx")
    images = write_bins(tmp_path / "bin_data", n)
    proc = _run(tmp_path, "--model", str(model), "--input", "bin_data", "--output", "./", "--output_dirname", "dst",
                "--outfmt", "TXT")
    outs = sorted(p.name for p in (tmp_path / "dst").iterdir())
    assert outs == sorted(f"img{i}_0.txt" for i in range(n))  # no outputs for the padding
    for i in (0, 1, 2, 10, n - 1):
        text = (tmp_path / "dst" / f"img{i}_0.txt").read_text()
        assert TXT_LINE.match(text)
        assert np.array_equal(np.array(text.split(), float), images[i].reshape(-1)[:100])  # its own image
    summary = json.loads((tmp_path / "dst_summary.json").read_text())
    # ais_bench's keys in ais_bench's order, then ours
    assert list(summary)[:8] == ["filesinfo", "args", "NPU_compute_time", "H2D_latency", "D2H_latency", "throughput",
                                 "npu_compute_time_list", "pid"]
    assert set(summary["NPU_compute_time"]) == {"min", "max", "mean", "median", "percentile(99%)", "count"}
    assert summary["NPU_compute_time"]["count"] == -(-n // 24) == len(summary["npu_compute_time_list"])
    assert "CPU" in summary["device"] and summary["args"][1:3] == ["--model", str(model)]
    # filesinfo per sample, paths as ais_bench joins them
    assert len(summary["filesinfo"]) == n
    assert summary["filesinfo"]["0"] == {"infiles": ["bin_data/img0.bin"], "outfiles": ["./dst/img0_0.txt"]}
    assert summary["filesinfo"][str(n - 1)]["infiles"] == [f"bin_data/img{n - 1}.bin"]
    assert re.search(r"\[INFO\] NPU_compute_time \(ms\): min = [\d.]+, max = [\d.]+, mean = [\d.]+, median = [\d.]+, "
                     r"percentile\(99%\) = [\d.]+", proc.stdout)
    assert re.search(r"\[INFO\] throughput 1000\*batchsize.mean\(24\)/NPU_compute_time.mean\([\d.]+\): [\d.]+",
                     proc.stdout)


def test_runner_natural_order_groups(tmp_path):
    """img2 is in the first batch with img0..img23, img24 starts the second (natural, not lexical, order)."""
    model = tiny_model(tmp_path / "m.onnx")
    write_bins(tmp_path / "bin_data", 30)
    _run(tmp_path, "--model", str(model), "--input", "bin_data", "--output", "o", "--output_dirname", "d", "--quiet")
    info = json.loads((tmp_path / "o" / "d_summary.json").read_text())["filesinfo"]
    assert [info[str(i)]["infiles"] for i in range(26)] == [[f"bin_data/img{i}.bin"] for i in range(26)]
    assert info["2"]["outfiles"] == ["o/d/img2_0.bin"]


def test_runner_npy_inputs_and_npy_bin_outputs(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    images = write_bins(tmp_path / "npys", 26, seed=1, prefix="x", npy=True)
    _run(tmp_path, "--model", str(model), "--input", "npys", "--output", "o", "--output_dirname", "n",
         "--outfmt", "NPY", "--quiet")
    got = np.load(tmp_path / "o" / "n" / "x25_0.npy")
    assert got.shape == (1, 100) and np.array_equal(got[0], images[25].reshape(-1)[:100])
    _run(tmp_path, "--model", str(model), "--input", "npys", "--output", "o", "--output_dirname", "b",
         "--outfmt", "BIN", "--quiet")
    raw = np.fromfile(tmp_path / "o" / "b" / "x3_0.bin", dtype=np.float32)
    assert np.array_equal(raw, images[3].reshape(-1)[:100])


def test_runner_comma_separated_files(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    write_bins(tmp_path / "b", 3)
    _run(tmp_path, "--model", str(model), "--input", "b/img2.bin,b/img0.bin", "--output", "o",
         "--output_dirname", "d", "--outfmt", "TXT", "--quiet")
    assert sorted(p.name for p in (tmp_path / "o" / "d").iterdir()) == ["img0_0.txt", "img2_0.txt"]


def test_runner_timestamped_folder_without_dirname(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    write_bins(tmp_path / "b", 2)
    _run(tmp_path, "--model", str(model), "--input", "b", "--output", "o", "--quiet")
    folders = [p for p in (tmp_path / "o").iterdir() if p.is_dir()]
    assert len(folders) == 1 and re.fullmatch(r"\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d", folders[0].name)
    assert (tmp_path / "o" / f"{folders[0].name}_summary.json").is_file()


def test_runner_bad_inputs(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "a.bin").write_bytes(b"\0" * 1000)
    proc = _run(tmp_path, "--model", str(model), "--input", "b", check=False)
    assert proc.returncode == 2 and "a.bin: 1000 bytes does not divide the model input's 73728 bytes" in proc.stderr
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.bin").write_bytes(b"\0" * 3072)
    (tmp_path / "c" / "b.bin").write_bytes(b"\0" * 6144)
    proc = _run(tmp_path, "--model", str(model), "--input", "c", "--output", "o", check=False)
    assert proc.returncode == 2 and "b.bin: 6144 bytes, but a.bin has 3072" in proc.stderr
    proc = _run(tmp_path, "--model", str(model), "--input", "nowhere", check=False)
    assert proc.returncode == 2 and "nowhere: no such input file or folder" in proc.stderr
    proc = _run(tmp_path, "--model", "missing.onnx", check=False)
    assert proc.returncode == 2 and "missing.onnx: no such model file" in proc.stderr
    np.save(tmp_path / "f.npy", np.zeros((32, 32, 3), np.float32))
    proc = _run(tmp_path, "--model", str(model), "--input", "f.npy", check=False)
    assert proc.returncode == 2 and "dtype float32, but the model input is uint8" in proc.stderr


def test_pure_inference_mode(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    proc = _run(tmp_path, "--model", str(model), "--loop", "5", "--warmup_count", "2", "--pure_data_type", "random",
                "--output", "o", "--output_dirname", "p")
    s = json.loads((tmp_path / "o" / "p_summary.json").read_text())
    assert s["NPU_compute_time"]["count"] == 5 and s["throughput"] > 0
    # as ais_bench: pure inference with --output writes the output of the pure-inference batch once
    assert [p.name for p in (tmp_path / "o" / "p").iterdir()] == ["pure_infer_data_0.bin"]
    assert (tmp_path / "o" / "p" / "pure_infer_data_0.bin").stat().st_size == 24 * 100 * 4
    assert "pure inference: 5 loops of random input, 2 warm-up" in proc.stdout


def _fake_ais_bench(tmp_path):
    env = fake_ais_bench(tmp_path, "import json, sys, os\n"
                                   "open(os.environ['AIS_CALLS'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    return {**env, "AIS_CALLS": str(tmp_path / "calls.txt")}


def test_om_model_runs_ais_bench_with_the_exact_command_line(tmp_path):
    env = _fake_ais_bench(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "resnet50_quant_bs24.om").write_bytes(b"om")
    args = ["--model", "./models/resnet50_quant_bs24.om", "--input", "./bin_data", "--output", "./", "--outfmt",
            "TXT", "--output_dirname", "dst"]
    run_script(["infer.sh", *args, "--quiet"], cwd=tmp_path, env=env)
    calls = [json.loads(x) for x in (tmp_path / "calls.txt").read_text().splitlines()]
    assert calls == [args]
    run_script(["benchmark.sh"], cwd=tmp_path, env=env)  # the ModelZoo's performance command
    calls = [json.loads(x) for x in (tmp_path / "calls.txt").read_text().splitlines()]
    assert calls[1] == ["--model", "models/resnet50_quant_bs24.om", "--loop", "100", "--batchsize", "24"]


def test_om_model_without_ais_bench(tmp_path):
    (tmp_path / "m.om").write_bytes(b"om")
    proc = _run(tmp_path, "--model", "m.om", "--input", "x", check=False)
    assert proc.returncode == 1 and "ais_bench, which is not installed" in proc.stderr


# --- postprocess -----------------------------------------------------------------------------------------

def _outputs(folder, vectors, fmt="txt"):
    folder.mkdir(parents=True, exist_ok=True)
    for name, vec in vectors.items():
        vec = np.asarray(vec, np.float32)
        if fmt == "txt":
            (folder / f"{name}_0.txt").write_text("".join(f"{v:f} " for v in vec) + "\n")
        elif fmt == "npy":
            np.save(folder / f"{name}_0.npy", vec[None])
        else:
            vec.tofile(folder / f"{name}_0.bin")


def _vec(order, n=10):
    """A probability vector whose classes rank in the given order (first = highest)."""
    v = np.zeros(n)
    for rank, c in enumerate(order):
        v[c] = 1.0 - 0.05 * rank
    return v


@pytest.mark.parametrize("fmt", ["txt", "npy", "bin"])
def test_postprocess_known_answers(tmp_path, fmt):
    # img0: right at rank 1; img1: rank 2; img2: rank 5; img3: rank 6 (a miss for top-5)
    _outputs(tmp_path / "dst", {"img0": _vec([3]), "img1": _vec([1, 4]), "img2": _vec([0, 1, 2, 3, 9]),
                                "img3": _vec([0, 1, 2, 3, 4, 8])}, fmt)
    (tmp_path / "dst_summary.json").write_text("{}")
    (tmp_path / "dst" / "notes.md").write_text("not an output")
    (tmp_path / "dst" / "img0_1.txt").write_text("1 2 3\n")  # a second model output: not scored
    (tmp_path / "labels.txt").write_text("img0 3\nimg1 4\nimg2 9\nimg3 8\n")
    proc = run_script(["postprocess.py", "dst/", "labels.txt", "./", "result.json"], cwd=tmp_path)
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["title"] == "Overall statistical evaluation"
    assert res["value"] == [
        {"key": "Number of images", "value": "4"}, {"key": "Number of classes", "value": "10"},
        {"key": "Top1 accuracy", "value": "25.0%"}, {"key": "Top2 accuracy", "value": "50.0%"},
        {"key": "Top3 accuracy", "value": "50.0%"}, {"key": "Top4 accuracy", "value": "50.0%"},
        {"key": "Top5 accuracy", "value": "75.0%"}]
    m = res["metrics"]
    assert (m["top1"], m["top5"], m["num_images"], m["num_classes"]) == (25.0, 75.0, 4, 10)
    assert m["per_class_top1"][3] == 100.0 and m["per_class_top1"][4] == 0.0 and m["per_class_top1"][5] is None
    assert {"true": 4, "predicted": 1, "count": 1} in m["most_confused"]
    assert "25.00%" in proc.stdout


def test_postprocess_names_classes(tmp_path):
    from poc.scoring import score
    _outputs(tmp_path / "dst", {"img0": _vec([3]), "img1": _vec([1, 4]), "img2": _vec([1])})
    (tmp_path / "labels.txt").write_text("img0 3\nimg1 4\nimg2 4\n")
    r = score(tmp_path / "dst", tmp_path / "labels.txt", log=Log(quiet=True))
    assert r["class_names"] is None  # no class_names.txt: by index
    (tmp_path / "class_names.txt").write_text("".join(f"name{i}\n" for i in range(10)))
    r = score(tmp_path / "dst", tmp_path / "labels.txt", log=Log(quiet=True))
    assert r["most_confused"] == [{"true": 4, "predicted": 1, "count": 2, "true_name": "name4",
                                   "predicted_name": "name1"}]
    assert worst_classes(r, 2) == [("name4", 0.0), ("name3", 100.0)]
    assert result_json(r)["metrics"]["class_names"][4] == "name4"
    (tmp_path / "other.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="2 class names, but the outputs have 10 classes"):
        score(tmp_path / "dst", tmp_path / "labels.txt", log=Log(quiet=True), class_names=tmp_path / "other.txt")
    proc = run_script(["postprocess.py", "dst", "labels.txt", "./", "result.json", "--class_names", "other.txt"],
                      cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "other.txt: 2 class names" in proc.stderr
    assert not (tmp_path / "result.json").exists()


def test_postprocess_topk_flag(tmp_path):
    _outputs(tmp_path / "dst", {"img0": _vec([1, 2]), "img1": _vec([2])})
    (tmp_path / "l.txt").write_text("img0 2\nimg1 2\n")
    run_script(["postprocess.py", "dst", "l.txt", "out", "r.json", "--topk", "2", "--quiet"], cwd=tmp_path)
    assert [v["key"] for v in json.loads((tmp_path / "out" / "r.json").read_text())["value"]][-1] == "Top2 accuracy"


@pytest.mark.parametrize("case, message", [
    ("missing", r"no output for 3 labelled images: img2, img3, img4 \(--allow_missing"),
    ("unlabelled", r"img9_0.txt: an output without a label"),
    ("length", r"img1_0.txt: 9 values, but img0_0.txt has 10"),
    ("nan", r"img1_0.txt: holds NaN or infinite values"),
    ("label_range", r"label 12 of img1 is outside the 10 output classes"),
    ("duplicate", r"a second output for img0"),
    ("bad_label_line", r"line 2: expected 'img\{i\} \{label\}'"),
])
def test_postprocess_bad_cases(tmp_path, case, message):
    vecs = {"img0": _vec([0]), "img1": _vec([1])}
    labels = "img0 0\nimg1 1\n"
    if case == "missing":
        labels += "img2 1\nimg3 1\nimg4 1\n"
    if case == "unlabelled":
        vecs["img9"] = _vec([1])
    if case == "length":
        vecs["img1"] = np.ones(9)
    if case == "nan":
        vecs["img1"] = np.full(10, np.nan)
    if case == "label_range":
        labels = "img0 0\nimg1 12\n"
    if case == "bad_label_line":
        labels = "img0 0\nimg1\n"
    _outputs(tmp_path / "dst", vecs)
    if case == "duplicate":
        np.save(tmp_path / "dst" / "img0_0.npy", _vec([0])[None])
    (tmp_path / "l.txt").write_text(labels)
    (tmp_path / "result.json").write_text("old")
    proc = run_script(["postprocess.py", "dst", "l.txt", "./", "new.json"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and re.search(message, proc.stderr), proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "new.json").exists()


def test_postprocess_allow_missing(tmp_path):
    _outputs(tmp_path / "dst", {"img0": _vec([0])})
    (tmp_path / "l.txt").write_text("img0 0\nimg1 1\n")
    proc = run_script(["postprocess.py", "dst", "l.txt", "./", "r.json", "--allow_missing"], cwd=tmp_path)
    m = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert m["num_images"] == 1 and m["missing_outputs"] == 1 and "1 labelled images have no output" in proc.stdout


@pytest.mark.parametrize("script", ["infer.sh", "postprocess.py", "benchmark.sh", "pipeline.sh", "report.py"])
def test_help(script, tmp_path):
    out = run_script([script, "--help"], cwd=tmp_path).stdout
    assert "usage" in out.lower()


def test_runner_failure_midway_keeps_previous_outputs_and_rerun_replaces(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    images = write_bins(tmp_path / "in", 30, seed=2, prefix="x", npy=True)
    args = ["--model", str(model), "--input", "in", "--output", "o", "--output_dirname", "dst", "--outfmt", "TXT",
            "--quiet"]
    _run(tmp_path, *args)
    before = {p.name: p.read_text() for p in (tmp_path / "o" / "dst").iterdir()}
    assert len(before) == 30
    np.save(tmp_path / "in" / "x27.npy", images[27].astype(np.float32))  # found only in the second batch
    proc = _run(tmp_path, *args, check=False)
    assert proc.returncode == 2 and "x27.npy: dtype float32, but the model input is uint8" in proc.stderr
    assert {p.name: p.read_text() for p in (tmp_path / "o" / "dst").iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["dst", "dst_summary.json"]  # no temporaries
    # a smaller re-run replaces the folder whole: no stale outputs from the larger one
    for i in range(5, 30):
        (tmp_path / "in" / f"x{i}.npy").unlink()
    _run(tmp_path, *args)
    assert sorted(p.name for p in (tmp_path / "o" / "dst").iterdir()) == sorted(f"x{i}_0.txt" for i in range(5))


def test_int8_against_fp32_says_which_way_in_words():
    from poc.shared.progress import versus
    assert versus(94.75, 95.0) == "94.75 % vs 95.00 %: 0.25 points lower"
    assert versus(95.2, 95.0) == "95.20 % vs 95.00 %: 0.20 points higher"
    assert versus(95.0, 95.0) == "95.00 % vs 95.00 %: the same"


def test_result_metrics_are_rounded_for_programs():
    import json as json_

    from poc.scoring import result_json
    r = {"num_images": 2000, "num_classes": 100, "topk": {1: 1977 / 2000 * 100, 5: 100.0}, "missing": 0,
         "per_class_top1": [1977 / 2000 * 100, None], "most_confused": []}
    assert r["topk"][1] == 98.85000000000001  # what float arithmetic gives
    out = result_json(r)
    assert out["metrics"]["top1"] == 98.85 and out["metrics"]["per_class_top1"] == [98.85, None]
    assert out["value"][2] == {"key": "Top1 accuracy", "value": "98.85%"}
    assert "98.85000000000001" not in json_.dumps(out)


def test_export_check_reads_the_weights_and_writes_nothing(tmp_path):
    from poc.formats.pth import save_checkpoint
    from poc.models.mmcls_resnet import ImageClassifier
    save_checkpoint(ImageClassifier(10), tmp_path / "m.pth")
    proc = run_script(["export_onnx.py", "--checkpoint", "m.pth", "--check"], cwd=tmp_path)
    assert "m.pth: read and checked (10 classes)" in proc.stdout and not (tmp_path / "models").exists()
    out = run_script(["export_onnx.py", "--help"], cwd=tmp_path).stdout
    assert ".ckpt" in out and ".ms" in out and "--check" in out


def test_the_ais_bench_summary_and_the_confused_pairs_are_read_one_way():
    """The --model of a run in any of ais_bench's spellings; confused pairs most first, ties the lower pair first,
    each with its images."""
    from poc.shared.aisbench import confused_pairs, model_of
    assert model_of({"args": ["--model", "m.onnx", "--loop", "2"]}) == "m.onnx"
    assert model_of({"args": ["-m", "a.om"]}) == "a.om" and model_of({"args": ["--model=b.xml"]}) == "b.xml"
    assert model_of({"args": "not a list"}) is None and model_of(None) is None
    labels, pred = np.array([0, 0, 1, 1, 2, 2, 2]), np.array([1, 1, 0, 1, 0, 1, 2])
    pairs = [(t, p, list(images)) for t, p, images in confused_pairs(labels, pred, 3)]
    assert pairs == [(0, 1, [0, 1]), (1, 0, [2]), (2, 0, [4]), (2, 1, [5])]
