"""The results report: one self-contained ``report.html`` beside ``result.json`` (inline CSS, inline SVG charts,
thumbnails embedded as PNG data, no script, no network), for a person rather than a program.

It reads what the stages wrote — ``result.json``, the inference outputs and the labels, the pictures, and where
they are there the FP32 outputs, ``benchmark.json``, the quantization report and a per-layer comparison CSV — and
leaves out, with a line saying so, every section whose input is not there.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from poc.accuracy import metrics
from poc.shared.aisbench import (
    LabelledOutputs,
    confused_pairs,
    model_of,
    per_class_counts,
    read_labelled_outputs,
)
from poc.shared.bins import class_names_for, read_text_file
from poc.shared.errors import InputError, OutputSet, read_regular
from poc.shared.progress import Log

MAX_JSON_BYTES = 64 << 20  # benchmark.json with its sweep is well under a megabyte
THUMB = 64  # thumbnail side in pixels (a 32x32 CIFAR image is shown at twice its size, pixelated)
EXAMPLES_PER_PAIR = 4
CONFUSED_PAIRS = 10
WORST_CLASSES = 10
COSINE_FLOOR = metrics.COSINE_FLOOR  # the Ascend accuracy tools' threshold for a layer that went wrong


@dataclass
class Inputs:
    """Where each input of the report is; None: that section is left out."""
    result: Path
    outputs: Path
    labels: Path
    pics: Path | None = None
    fp32_outputs: Path | None = None
    benchmark: Path | None = None
    quant_report: Path | None = None
    compare: Path | None = None
    class_names: Path | None = None


@dataclass
class Section:
    title: str
    body: str = ""
    skipped: str = ""  # why it is left out


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)

    def html(self) -> str:
        nav = " · ".join(f'<a href="#s{i}">{html.escape(s.title)}</a>' for i, s in enumerate(self.sections))
        parts = []
        for i, s in enumerate(self.sections):
            inner = s.body if not s.skipped else f'<p class="skipped">Left out: {html.escape(s.skipped)}</p>'
            parts.append(f'<section id="s{i}"><h2>{html.escape(s.title)}</h2>{inner}</section>')
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
                f"<header><h1>{html.escape(self.title)}</h1><p>{self.subtitle}</p><nav>{nav}</nav></header>"
                + "".join(parts) + "</body></html>\n")


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;margin:0 auto;max-width:1180px;
padding:0 24px 48px;background:#fafbfc}
header{border-bottom:2px solid #d9dee7;margin-bottom:8px}h1{font-size:24px;margin:20px 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e3e7ee;padding-bottom:4px}
nav a{color:#2c5aa0;text-decoration:none}nav{margin:6px 0 12px;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #d9dee7;border-radius:8px;
padding:10px 16px;min-width:120px}.card .v{font-size:26px;font-weight:600}.card .k{color:#5b6678;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:8px 0}td,th{border:1px solid #e3e7ee;padding:3px 8px;
text-align:left;vertical-align:middle}th{background:#f0f3f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
.skipped{color:#7a8394;font-style:italic}.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:96px;text-align:center;font-size:11px}figure img,td img{image-rendering:pixelated;
width:64px;height:64px;border:1px solid #cfd5df}figcaption{word-break:break-word}
.ok{color:#1d7a3a}.bad{color:#b3261e}svg{background:#fff;border:1px solid #e3e7ee}
.note{color:#5b6678;font-size:12px}
"""


def esc(x) -> str:
    return html.escape(str(x))


# --- inputs ---------------------------------------------------------------------------------------------------

def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(read_regular(path, what, MAX_JSON_BYTES))
    except (UnicodeDecodeError, ValueError):
        raise InputError(path, f"not a JSON {what}") from None
    if not isinstance(data, dict):
        raise InputError(path, f"not a {what}: expected a JSON object, found {type(data).__name__}")
    return data


def read_result(path: Path) -> dict[str, str]:
    """The ModelZoo's result.json as {key: value string}; anything else is refused in one line."""
    data = read_json(path, "result file")
    value = data.get("value")
    if not isinstance(data.get("title"), str) or not isinstance(value, list) or not all(
            isinstance(v, dict) and isinstance(v.get("key"), str) and isinstance(v.get("value"), str) for v in value):
        raise InputError(path, 'not the ModelZoo result schema ({"title": ..., "value": [{"key": ..., "value": ...}]})')
    found = {v["key"]: v["value"] for v in value}
    if "Top1 accuracy" not in found:
        raise InputError(path, "has no 'Top1 accuracy' entry")
    return found


def thumbnail(pics: Path | None, stem: str, cache: dict) -> str:
    """An ``<img>`` of ``pics/{stem}.png`` as embedded PNG data, or a labelled blank where there is no picture."""
    if stem in cache:
        return cache[stem]
    tag = f'<span class="note">[{esc(stem)}: no picture]</span>'
    path = pics / f"{stem}.png" if pics else None
    if path is not None and path.is_file():
        try:
            with Image.open(io.BytesIO(read_regular(path, "picture", 64 << 20))) as img:
                img = img.convert("RGB")
                if max(img.size) > THUMB:
                    img.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
                buf = io.BytesIO()
                img.save(buf, format="PNG", optimize=True)
            tag = (f'<img alt="{esc(stem)}" src="data:image/png;base64,'
                   f'{base64.b64encode(buf.getvalue()).decode()}">')
        except (OSError, InputError, Image.DecompressionBombError):
            tag = f'<span class="note">[{esc(stem)}: unreadable picture]</span>'
    cache[stem] = tag
    return tag


def as_probabilities(scores: np.ndarray) -> np.ndarray:
    """The outputs as probabilities: a softmax output as it is, anything else through a softmax."""
    sums = scores.sum(1)
    if (scores >= 0).all() and np.allclose(sums, 1.0, atol=1e-3):
        return scores
    e = np.exp(scores - scores.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# --- charts (inline SVG) ------------------------------------------------------------------------------------------

def bar_chart(values: list[float], labels: list[str], width: int = 1100, height: int = 220, ymax: float = 100.0,
              unit: str = "%") -> str:
    """Vertical bars, one per value (already sorted), labelled below when there are few enough."""
    n = max(len(values), 1)
    left, bottom, top = 40, 40 if n <= 40 else 12, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    bar = plot_w / n
    out = [f'<svg role="img" aria-label="per-class top-1" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']
    for frac in (0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - frac)
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7ee"/>'
                   f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{frac * ymax:.0f}{unit}</text>')
    for i, (v, label) in enumerate(zip(values, labels, strict=True)):
        h = plot_h * max(0.0, min(v, ymax)) / ymax
        x = left + i * bar
        colour = "#b3261e" if v < 50 else "#d98c1f" if v < 80 else "#2f7d4f"
        out.append(f'<rect x="{x + bar * 0.1:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar * 0.8, 0.5):.1f}" '
                   f'height="{h:.1f}" fill="{colour}"><title>{esc(label)}: {v:.1f}{unit}</title></rect>')
        if n <= 40:
            out.append(f'<text transform="translate({x + bar / 2:.1f},{top + plot_h + 6}) rotate(45)" font-size="9">'
                       f'{esc(label[:14])}</text>')
    out.append("</svg>")
    return "".join(out)


def range_bars(rows: list[tuple[str, float, float, float, float | None]], width: int = 760) -> str:
    """Horizontal bars (label, value, low, high, limit): a whisker for the spread and a red tick at the row's limit."""
    scale_max = max([r[3] for r in rows] + [r[4] or 0 for r in rows]) * 1.12 or 1.0
    left, row_h = 250, 26
    height = row_h * len(rows) + 24
    out = [f'<svg role="img" aria-label="throughput" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'xmlns="http://www.w3.org/2000/svg">']
    plot_w = width - left - 70
    def x(v):
        return left + plot_w * v / scale_max
    for i, (label, value, low, high, limit) in enumerate(rows):
        y = 6 + i * row_h
        out.append(f'<text x="{left - 6}" y="{y + 15}" font-size="11" text-anchor="end">{esc(label)}</text>'
                   f'<rect x="{left}" y="{y + 3}" width="{x(value) - left:.1f}" height="16" fill="#4a78b5"/>'
                   f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{y + 11}" y2="{y + 11}" stroke="#1d2430" '
                   f'stroke-width="2"/><text x="{max(x(high), x(limit or 0)) + 6:.1f}" y="{y + 15}" font-size="11">'
                   f'{value:,.0f}</text>')
        if limit:
            out.append(f'<line x1="{x(limit):.1f}" x2="{x(limit):.1f}" y1="{y}" y2="{y + 22}" stroke="#b3261e" '
                       'stroke-width="2"><title>the CPU\'s limit at this precision</title></line>')
    out.append(f'<text x="{left}" y="{height - 4}" font-size="10">images/s; black: slowest to fastest round; red: the '
               "CPU's limit at the row's precision</text></svg>")
    return "".join(out)


def line_chart(values: list[float], floor: float, width: int = 1100, height: int = 200) -> str:
    """Cosine similarity by layer, with the threshold as a dashed line."""
    lo = min(min(values, default=1.0), floor) - 0.01
    left, top, bottom = 50, 10, 24
    plot_w, plot_h = width - left - 10, height - top - bottom
    def y(v):
        return top + plot_h * (1.0 - v) / (1.0 - lo)
    step = plot_w / max(len(values) - 1, 1)
    points = " ".join(f"{left + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
    return (f'<svg role="img" aria-label="cosine by layer" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'<line x1="{left}" x2="{width - 10}" y1="{y(floor):.1f}" y2="{y(floor):.1f}" stroke="#b3261e" '
            f'stroke-dasharray="4 3"/><text x="{left - 4}" y="{y(floor) + 4:.1f}" font-size="10" '
            f'text-anchor="end">{floor}</text><text x="{left - 4}" y="{y(1.0) + 10:.1f}" font-size="10" '
            f'text-anchor="end">1.0</text><polyline points="{points}" fill="none" stroke="#4a78b5" stroke-width="1.5"/>'
            f'<text x="{left}" y="{height - 6}" font-size="10">layer (in graph order) →</text></svg>')


# --- sections -----------------------------------------------------------------------------------------------------

def headline(result: dict[str, str], run: LabelledOutputs, profile, engine: str) -> Section:
    cards = [("top-1", result["Top1 accuracy"]), ("top-5", result.get("Top5 accuracy", "–")),
             ("images", result.get("Number of images", str(len(run.stems)))),
             ("classes", result.get("Number of classes", str(run.num_classes))), ("engine", engine)]
    body = '<div class="cards">' + "".join(f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}'
                                          '</div></div>' for k, v in cards) + "</div>"
    if profile.published:
        body += ("<table><tr><th>published top-1</th><th></th></tr>"
                 + "".join(f'<tr><td>{esc(what)}</td><td class="n">{top1:.2f} %</td></tr>'
                           for what, top1 in profile.published.items()) + "</table>")
    if result.get("Number of images") not in (None, str(len(run.stems))):
        body += (f'<p class="bad">result.json counts {esc(result["Number of images"])} images, the outputs '
                 f'{len(run.stems)}: they are not from the same run.</p>')
    return Section("Headline", body)


def per_class(run: LabelledOutputs, pred: np.ndarray, names: list[str]) -> Section:
    seen, hits = per_class_counts(run.labels, pred, run.num_classes)
    present = [c for c in range(run.num_classes) if seen[c]]
    acc = {c: hits[c] / seen[c] * 100 for c in present}
    order = sorted(present, key=lambda c: (acc[c], c))
    chart = bar_chart([acc[c] for c in order], [names[c] for c in order])
    rows = "".join(f'<tr><td>{esc(names[c])}</td><td class="n">{acc[c]:.1f} %</td><td class="n">{hits[c]} / '
                   f'{seen[c]}</td></tr>' for c in order[:WORST_CLASSES])
    return Section("Per-class top-1", f'<p class="note">{len(present)} classes in the test images, lowest first.</p>'
                   f'{chart}<h3>The {min(WORST_CLASSES, len(order))} lowest</h3><table><tr><th>class</th>'
                   f'<th>top-1</th><th>right</th></tr>{rows}</table>')


def confused(run: LabelledOutputs, pred: np.ndarray, names: list[str], pics, cache) -> Section:
    pairs = confused_pairs(run.labels, pred, run.num_classes, CONFUSED_PAIRS)
    if not pairs:
        return Section("Most confused classes", "<p>No image is misclassified.</p>")
    rows = [f'<tr><td>{esc(names[t])}</td><td>{esc(names[p])}</td><td class="n">{len(images)}</td><td>'
            + " ".join(thumbnail(pics, run.stems[j], cache) for j in images[:EXAMPLES_PER_PAIR]) + "</td></tr>"
            for t, p, images in pairs]
    return Section("Most confused classes", "<table><tr><th>true class</th><th>predicted as</th><th>images</th>"
                   f"<th>examples</th></tr>{''.join(rows)}</table>")


def gallery(run: LabelledOutputs, pred, conf, names, pics, cache, cap: int) -> Section:
    wrong = np.flatnonzero(pred != run.labels)
    if not len(wrong):
        return Section("Misclassified images", "<p>None.</p>")
    shown = np.sort(np.random.default_rng(0).choice(wrong, min(cap, len(wrong)), replace=False))
    figures = "".join(f'<figure>{thumbnail(pics, run.stems[j], cache)}<figcaption>{esc(names[run.labels[j]])} → '
                      f'<b>{esc(names[pred[j]])}</b> ({conf[j] * 100:.0f} %)</figcaption></figure>' for j in shown)
    return Section("Misclassified images", f'<p class="note">{len(shown)} of {len(wrong)} misclassified images '
                   f'(a seeded sample, in image order): true → <b>predicted</b> (confidence).</p>'
                   f'<div class="gallery">{figures}</div>')


def int8_vs_fp32(run: LabelledOutputs, pred, fp32_dir: Path, label_path: Path, names, pics, cache,
                 cap: int) -> Section:
    ref = read_labelled_outputs(fp32_dir, label_path, allow_missing=True)
    index = {s: i for i, s in enumerate(ref.stems)}
    common = [i for i, s in enumerate(run.stems) if s in index]
    if not common or ref.num_classes != run.num_classes:
        return Section("INT8 vs FP32", skipped=f"the outputs in {fp32_dir} are not of the same images and classes")
    ref_pred = ref.scores.argmax(1)[[index[run.stems[i]] for i in common]]
    ours, y = pred[common], run.labels[common]
    agree = ours == ref_pred
    table = [("both right", int(((ours == y) & (ref_pred == y)).sum())),
             ("only INT8 right", int(((ours == y) & (ref_pred != y)).sum())),
             ("only FP32 right", int(((ours != y) & (ref_pred == y)).sum())),
             ("both wrong", int(((ours != y) & (ref_pred != y)).sum()))]
    body = (f'<div class="cards"><div class="card"><div class="v">{agree.mean() * 100:.2f} %</div><div class="k">'
            f'top-1 agreement over {len(common)} images</div></div></div><table>'
            + "".join(f'<tr><td>{k}</td><td class="n">{v}</td></tr>' for k, v in table) + "</table>")
    differ = np.flatnonzero(~agree)[:cap]  # positions in common
    if len(differ):
        figures = []
        for k in differ:
            j, r = common[k], ref_pred[k]
            mark = ("INT8 right" if pred[j] == run.labels[j] else "FP32 right" if r == run.labels[j] else "both wrong")
            figures.append(f'<figure>{thumbnail(pics, run.stems[j], cache)}<figcaption>{esc(names[run.labels[j]])}<br>'
                           f'INT8 {esc(names[pred[j]])}<br>FP32 {esc(names[r])}<br><i>{mark}</i></figcaption></figure>')
        body += (f"<h3>Where they disagree ({len(differ)} of {int((~agree).sum())})</h3>"
                 f'<div class="gallery">{"".join(figures)}</div>')
    return Section("INT8 vs FP32", body)


def benchmark_section(bench: dict, path: Path) -> Section:
    rows = bench.get("cpu")
    if not isinstance(rows, dict) or not rows:
        return Section("Throughput", skipped=f"{path} holds no CPU rows")
    limits = bench.get("cpu_rates_gmac_per_s") or {}
    gmac = bench.get("gmac_per_image") or 0
    table, bars = [], []
    for name, r in sorted(rows.items(), key=lambda kv: (str(kv[1].get("precision")), -float(kv[1].get("throughput", 0)))):
        try:
            tp = float(r["throughput"])
            low, high = float(r.get("throughput_min", tp)), float(r.get("throughput_max", tp))
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"row {name!r} has no throughput") from None
        label = f"{r.get('engine', '?')} {str(r.get('precision', '?')).upper()}" + (
            f" {name[name.index('('):]}" if "(" in name else "")
        frac = f"{float(r['of_cpu_rate']) * 100:.0f} %" if "of_cpu_rate" in r else "–"
        table.append(f'<tr><td>{esc(label)}</td><td class="n">{r.get("batch", "")}</td><td class="n">{tp:,.1f}</td>'
                     f'<td class="n">{low:,.0f}–{high:,.0f}</td><td class="n">{frac}</td></tr>')
        rate = limits.get(r.get("precision")) if isinstance(limits, dict) else None
        bars.append((label, tp, low, high, float(rate) / gmac if rate and gmac else None))
    published = bench.get("ascend_310p3_published") or {}
    for key, a in published.items():
        table.append(f'<tr><td>Ascend 310P3 {esc(key.upper())} (published)</td><td class="n">{esc(a.get("batch", ""))}'
                     f'</td><td class="n">{float(a.get("throughput", 0)):,.0f}</td><td class="n">–</td><td class="n">–'
                     "</td></tr>")
    body = (f'<p class="note">{esc(bench.get("machine", {}).get("cpu", "CPU"))}, {esc(bench.get("date", ""))}: '
            f'{esc(bench.get("loop", ""))} runs per row in alternating rounds; the CPU\'s limit is its measured '
            "multiply-add rate at the row's precision over the network's multiply-adds per image.</p>"
            + range_bars(bars)
            + "<table><tr><th>engine, precision</th><th>batch</th><th>img/s</th><th>rounds min–max</th>"
              f"<th>of CPU rate</th></tr>{''.join(table)}</table>")
    e2e = bench.get("e2e_int8")
    if isinstance(e2e, dict) and "ratio_to_pure" in e2e:
        body += (f'<p>End to end (read, infer, write) over {esc(e2e.get("files"))} files: '
                 f'{float(e2e.get("e2e_images_per_s", 0)):,.1f} img/s = {float(e2e["ratio_to_pure"]) * 100:.0f} % of '
                 "pure inference.</p>")
    return Section("Throughput", body)


def quant_section(rep: dict) -> Section:
    f = rep.get("fidelity")
    if not isinstance(f, dict):
        return Section("Quantization", skipped="the quantization report holds no fidelity figures")
    body = (f"<p>FP32 vs INT8 on {esc(f.get('images'))} test images: top-1 agreement "
            f"{float(f.get('top1_agreement', 0)):.2f} %, mean cosine {float(f.get('mean_cosine', 0)):.5f}.</p>")
    rows = rep.get("sensitivity")
    if isinstance(rows, list) and rows:
        body += ("<table><tr><th>quantized alone</th><th>nodes</th><th>top-1 agreement</th><th>cosine</th></tr>"
                 + "".join(f'<tr><td>{esc(r.get("group"))}</td><td class="n">{esc(r.get("nodes"))}</td><td class="n">'
                           f'{float(r.get("top1_agreement", 0)):.2f} %</td><td class="n">'
                           f'{float(r.get("mean_cosine", 0)):.5f}</td></tr>' for r in rows) + "</table>")
    return Section("Quantization", body)


def compare_section(path: Path) -> Section:
    """A per-layer comparison CSV in the Ascend tools' layout (msit / msaccucmp ``result_*.csv``: one row per
    compared tensor with ``NPUDump`` and ``CosineSimilarity``)."""
    rows = list(csv.DictReader(io.StringIO(read_text_file(path, "comparison CSV"))))
    if not rows or "CosineSimilarity" not in rows[0]:
        raise InputError(path, "not a per-layer comparison CSV (no CosineSimilarity column)")
    layers = metrics.cosine_rows(rows)
    if not layers:
        return Section("Per-layer comparison", skipped=f"{path} has no compared layer")
    first = metrics.first_below(layers, COSINE_FLOOR)
    line = (f"The first layer below cosine {COSINE_FLOOR}: <b>{esc(first[0])}</b> ({first[1]:.5f})."
            if first else f"No layer falls below cosine {COSINE_FLOOR}.")
    return Section("Per-layer comparison", f"<p>{line} {len(layers)} layers compared.</p>"
                   + line_chart([v for _, v in layers], COSINE_FLOOR))


# --- the report ---------------------------------------------------------------------------------------------------

def run_of(outputs: Path) -> tuple[str, str]:
    """(engine, model) of an inference run, from the summary ais_bench (or the CPU runner) wrote beside its folder."""
    summary = outputs.parent / f"{outputs.name}_summary.json"
    if not summary.is_file():
        return "not recorded", "not recorded"
    try:
        data = read_json(summary, "inference summary")
    except InputError:
        return "not recorded", "not recorded"
    model = model_of(data) or "not recorded"
    device = data.get("device", "")
    return (str(device).split(":")[0] if device else "Ascend NPU (ais_bench)"), model


def build(inputs: Inputs, profile, gallery_cap: int = 48, log: Log | None = None) -> Report:
    log = log or Log(stage="report")
    result = read_result(inputs.result)
    run = read_labelled_outputs(inputs.outputs, inputs.labels, allow_missing=True, log=log)
    names = class_names_for(inputs.labels, inputs.class_names, run.num_classes) or \
        [f"class {c}" for c in range(run.num_classes)]
    probs = as_probabilities(run.scores)
    pred, conf = probs.argmax(1), probs.max(1)
    pics = inputs.pics if inputs.pics and inputs.pics.is_dir() else None
    cache: dict[str, str] = {}
    engine, model = run_of(inputs.outputs)
    report = Report(f"{profile.title}: results",
                    f"profile <b>{esc(profile.name)}</b> · model {esc(model)} · {len(run.stems)} images in "
                    f"{esc(inputs.outputs)} · engine {esc(engine)} · written {time.strftime('%Y-%m-%d %H:%M')}")
    report.sections.append(headline(result, run, profile, engine))
    report.sections.append(per_class(run, pred, names))
    if pics is None:
        log(f"no pictures in {inputs.pics}: the examples are left out")
    report.sections.append(confused(run, pred, names, pics, cache))
    report.sections.append(gallery(run, pred, conf, names, pics, cache, gallery_cap)
                           if pics else Section("Misclassified images", skipped=f"no pictures in {inputs.pics} (--pics)"))
    optional = [("INT8 vs FP32", inputs.fp32_outputs, "--fp32_outputs",
                 lambda p: int8_vs_fp32(run, pred, p, inputs.labels, names, pics, cache, 24)),
                ("Throughput", inputs.benchmark, "--benchmark",
                 lambda p: benchmark_section(read_json(p, "benchmark file"), p)),
                ("Quantization", inputs.quant_report, "--quant_report", lambda p: quant_section(read_json(p, "report"))),
                ("Per-layer comparison", inputs.compare, "--compare", compare_section)]
    for title, path, flag, make in optional:
        if path is None or not path.exists():
            report.sections.append(Section(title, skipped=f"no {flag} input" + (f" ({path})" if path else "")))
        else:
            report.sections.append(make(path))
    return report


def write_report(inputs: Inputs, out, profile, gallery_cap: int = 48, log: Log | None = None) -> Path:
    """Build the report and write it atomically (a failure leaves no half-written report)."""
    log = log or Log(stage="report")
    start = time.perf_counter()
    out = Path(out)
    named = {k: v for k, v in vars(inputs).items() if v is not None}
    with OutputSet({"report": out}, named) as outputs:
        page = build(inputs, profile, gallery_cap, log).html()
        outputs.file(out).write_text(page, encoding="utf-8")
    log(f"wrote {out} ({len(page.encode()) / 1e6:.2f} MB) in {time.perf_counter() - start:.1f} s")
    return out
