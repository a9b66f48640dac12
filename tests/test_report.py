"""report.html: its structure for every profile and for a partial run, bad input, and the page as a browser shows it."""
import base64
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script
from PIL import Image

from poc import profiles
from poc.report import Inputs, write_report
from poc.scoring import postprocess
from poc.shared.aisbench import format_txt
from poc.shared.errors import InputError
from poc.shared.progress import Log


def _run_folder(work: Path, profile, n: int = 40, seed: int = 0, pics: bool = True) -> Inputs:
    """A finished run in the real files: dst/ (TXT softmax outputs, right for about two images in three),
    img_label.txt, class_names.txt, pic/img{i}.png at the profile's size, result.json from postprocess."""
    rng = np.random.default_rng(seed)
    classes, hw = profile.num_classes, profile.image_hw
    labels = rng.integers(0, classes, n)
    logits = rng.standard_normal((n, classes)).astype(np.float32)
    logits[np.arange(n), labels] += np.where(rng.random(n) < 0.67, 6.0, -6.0)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    (work / "dst").mkdir(parents=True)
    for i in range(n):
        (work / "dst" / f"img{i}_0.txt").write_bytes(format_txt(probs[i:i + 1]))
    (work / "img_label.txt").write_text("".join(f"img{i} {labels[i]}\n" for i in range(n)))
    (work / "class_names.txt").write_text("".join(f"name<{c}>\n" for c in range(classes)))  # escaped in the page
    if pics:
        (work / "pic").mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (hw, hw, 3), dtype=np.uint8)).save(work / "pic" / f"img{i}.png")
    postprocess(work / "dst", work / "img_label.txt", work, "result.json", log=Log(True))
    return Inputs(result=work / "result.json", outputs=work / "dst", labels=work / "img_label.txt",
                  pics=work / "pic" if pics else None)


class _Page(HTMLParser):
    """What a reader of the page meets: section titles, images, text, and anything that would load or run."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.text, self.scripts, self.links, self.svgs = [], [], [], 0, [], 0
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._in_h2 = tag == "h2"
        if tag == "img":
            self.images.append(a.get("src", ""))
        self.scripts += tag == "script"
        self.svgs += tag == "svg"
        if tag in ("link", "iframe") or (tag == "a" and not a.get("href", "#").startswith("#")):
            self.links.append(a)

    def handle_endtag(self, tag):
        self._in_h2 = False if tag == "h2" else self._in_h2

    def handle_data(self, data):
        if self._in_h2:
            self.sections.append(data)
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.text = "".join(page.text)
    return page


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_report_for_every_profile(tmp_path, name):
    """10, 37 and 100 classes, 32x32 and 224x224 pictures: every section with its inputs, each image a real PNG
    embedded in the page, no script or outside link, the figures of result.json in the text."""
    profile = profiles.get(name)
    inputs = _run_folder(tmp_path, profile)
    fp32 = _run_folder(tmp_path / "fp32", profile, seed=1, pics=False)
    inputs.fp32_outputs = fp32.outputs
    out = write_report(inputs, tmp_path / "report.html", profile, gallery_cap=12, log=Log(True))
    page = _parse(out)
    assert page.sections == ["Headline", "Per-class top-1", "Most confused classes", "Misclassified images",
                             "INT8 vs FP32", "Throughput", "Quantization", "Per-layer comparison"]
    result = {v["key"]: v["value"] for v in json.loads(inputs.result.read_text())["value"]}
    assert result["Top1 accuracy"] in page.text and result["Top5 accuracy"] in page.text
    for what, top1 in profile.published.items():
        assert what in page.text and f"{top1:.2f} %" in page.text
    assert page.scripts == 0 and page.links == [] and page.svgs >= 1
    assert "name<3>" in page.text and "<3>" not in out.read_text().replace("&lt;3&gt;", "")  # escaped
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    for src in set(page.images):
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as img:
            assert img.format == "PNG" and max(img.size) <= 64
    wrong = sum(1 for line in (tmp_path / "img_label.txt").read_text().splitlines()
                if int(line.split()[1]) != int(np.argmax(np.loadtxt(tmp_path / "dst" / f"{line.split()[0]}_0.txt"))))
    assert f"of {wrong} misclassified images" in page.text
    assert "top-1 agreement over 40 images" in page.text
    assert "Left out: no --benchmark input" in page.text


def test_a_partial_run_leaves_sections_out_and_says_so(tmp_path):
    """Only result.json, the outputs and the labels: the accuracy sections, and a line for each one left out."""
    profile = profiles.get(None)
    inputs = _run_folder(tmp_path, profile, pics=False)
    (tmp_path / "class_names.txt").unlink()
    page = _parse(write_report(inputs, tmp_path / "r.html", profile, log=Log(True)))
    assert "Left out: no pictures in None (--pics)" in page.text and "Left out: no --fp32_outputs input" in page.text
    assert "class 0" in page.text or "class 1" in page.text  # no names: classes by index
    assert page.images == [] and "no picture]" in page.text  # the confused pairs name the image instead


def _write_bench(path: Path) -> None:
    """benchmark.json as benchmark.sh writes it (the keys the report reads)."""
    row = {"batch": 24, "throughput_rounds": [900.0, 1000.0, 1100.0], "throughput_min": 900.0,
           "throughput_max": 1100.0, "latency_ms_p50": 24.0}
    path.write_text(json.dumps({
        "date": "2026-12-07", "machine": {"cpu": "test CPU"}, "loop": 6, "gmac_per_image": 1.298,
        "cpu": {"int8": {**row, "engine": "onnxruntime", "precision": "int8", "throughput": 1000.0, "of_cpu_rate": 0.5},
                "openvino fp32": {**row, "engine": "openvino", "precision": "fp32", "throughput": 150.0,
                                  "throughput_min": 140.0, "throughput_max": 160.0, "of_cpu_rate": 0.9}},
        "cpu_rates_gmac_per_s": {"int8": 2600.0, "fp32": 216.0},
        "ascend_310p3_published": {"int8": {"batch": 24, "throughput": 14290}},
        "e2e_int8": {"files": 40, "e2e_images_per_s": 950.0, "ratio_to_pure": 0.95}}))


def _write_compare(path: Path, bad_layer: int) -> None:
    """A per-layer CSV in msit's layout: cosine 0.999 everywhere but one layer, and a row that was not compared."""
    head = "Index,OpType,NPUDump,DataType,GroundTruth,DataType,TensorIndex,Shape,CosineSimilarity,CompareFailReason\n"
    rows = [f"{i},Conv,conv{i},float32,conv{i},float32,conv{i}:output:0,\"[24,64,32,32]\","
            f"{0.95 if i == bad_layer else 0.999}," for i in range(12)]
    rows.append("12,Relu,relu_x,float32,NaN,NaN,,,NaN,No bench data matched.")
    path.write_text(head + "\n".join(rows) + "\n")


def test_benchmark_quantization_and_layer_sections(tmp_path):
    profile = profiles.get(None)
    inputs = _run_folder(tmp_path, profile)
    _write_bench(tmp_path / "benchmark.json")
    (tmp_path / "quant.json").write_text(json.dumps({"fidelity": {"images": 40, "top1_agreement": 97.5,
                                                                 "mean_cosine": 0.998},
                                                    "sensitivity": [{"group": "layer3", "nodes": 40,
                                                                     "top1_agreement": 99.0, "mean_cosine": 0.999}]}))
    _write_compare(tmp_path / "result_1.csv", bad_layer=7)
    inputs.benchmark, inputs.quant_report, inputs.compare = (tmp_path / "benchmark.json", tmp_path / "quant.json",
                                                             tmp_path / "result_1.csv")
    page = _parse(write_report(inputs, tmp_path / "r.html", profile, log=Log(True)))
    assert "900–1,100" in page.text and "50 %" in page.text and "Ascend 310P3 INT8 (published)" in page.text
    assert "14,290" in page.text and "= 95 % of pure inference" in page.text
    assert "top-1 agreement 97.50 %" in page.text and "layer3" in page.text
    assert "The first layer below cosine 0.99: conv7 (0.95000). 12 layers compared." in page.text
    assert page.svgs == 3  # per-class, throughput, cosine by layer


@pytest.mark.parametrize("case, message", [
    ("not_schema", "not the ModelZoo result schema"),
    ("not_json", "not a JSON result file"),
    ("unlabelled", "an output without a label"),
    ("label_outside", "outside the 100 output classes"),
    ("names_count", "3 class names, but the outputs have 100 classes"),
])
def test_bad_input_is_one_line_and_no_report(tmp_path, case, message):
    profile = profiles.get(None)
    inputs = _run_folder(tmp_path, profile, n=10, pics=False)
    (tmp_path / "report.html").write_text("the previous report")
    if case == "not_schema":
        inputs.result.write_text(json.dumps({"top1": 94.8}))
    elif case == "not_json":
        inputs.result.write_text("{not json")
    elif case == "unlabelled":
        shutil.copy(inputs.outputs / "img0_0.txt", inputs.outputs / "stray_0.txt")
    elif case == "label_outside":
        inputs.labels.write_text(re.sub(r"^img3 \d+$", "img3 100", inputs.labels.read_text(), flags=re.M))
    elif case == "names_count":
        (tmp_path / "class_names.txt").write_text("a\nb\nc\n")
    with pytest.raises(InputError, match=message):
        write_report(inputs, tmp_path / "report.html", profile, log=Log(True))
    assert (tmp_path / "report.html").read_text() == "the previous report"  # written atomically, or not at all
    proc = run_script(["report.py", "--result", str(inputs.result), "--outputs", str(inputs.outputs), "--labels",
                       str(inputs.labels), "--out", "report.html"], cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message.split(" (")[0] in proc.stderr


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# What the browser is asked, in a copy of the page (the report itself has no script): every image decoded, no error
# raised, and the charts and the gallery laid out with a size. The answer goes into the DOM that --dump-dom prints.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.target && e.target.src)), true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const size = sel => {
    const r = document.querySelector(sel)?.getBoundingClientRect();
    return r ? [r.width, r.height] : [0, 0];
  };
  const out = {images: imgs.length, broken: broken, errors: window.__errors, svgs: document.querySelectorAll('svg').length,
               chart: size('svg[aria-label="per-class top-1"]'), gallery: size('.gallery'), text: document.body.innerText};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _browser(args, cwd) -> subprocess.CompletedProcess:
    chromium = _chromium()
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=5000", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_report_as_a_browser_shows_it(tmp_path):
    """Headless Chromium renders the page: no console error, no broken image, the chart and the gallery visible
    with a size, the figures of result.json in the rendered text; and a screenshot that is not blank."""
    if _chromium() is None and not os.environ.get("CI"):
        pytest.skip("no chromium here (apt-get install -y chromium; CI installs it)")
    assert _chromium(), "CI must install chromium (.ci/run)"
    profile = profiles.get("ms-resnet50-0.65x-pets")
    inputs = _run_folder(tmp_path, profile, n=60)
    _write_bench(tmp_path / "benchmark.json")
    inputs.benchmark = tmp_path / "benchmark.json"
    page = write_report(inputs, tmp_path / "report.html", profile, log=Log(True))
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _browser(["--dump-dom", probe.as_uri()], tmp_path)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stderr[-2000:]
    import html as html_
    seen = json.loads(html_.unescape(found.group(1)))
    assert seen["images"] > 10 and seen["broken"] == 0 and seen["errors"] == []
    assert seen["svgs"] == 2 and min(seen["chart"]) > 100 and min(seen["gallery"]) > 60
    result = {v["key"]: v["value"] for v in json.loads(inputs.result.read_text())["value"]}
    assert result["Top1 accuracy"] in seen["text"]
    assert "name<3>" in seen["text"] or "name<" in seen["text"]  # the class names, escaped and shown as text
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln and "probe.html" in ln]
    assert console == [], console
    shot = tmp_path / "shot.png"
    _browser([f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()], tmp_path)
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.shape[:2] == (2000, 1280) and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
