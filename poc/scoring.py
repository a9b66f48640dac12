"""Stage 7: top-k accuracy from the runner's output files (never its memory) into result.json.

``result.json`` keeps the ModelZoo schema exactly ({"title", "value": [{"key", "value"}...]}, each value string
what the ModelZoo script writes: ``str(round(acc * 100, 2)) + "%"``) and adds machine-readable numbers beside it.
Ties between classes rank the lower class index first (a stable sort), so a result does not depend on the
numpy version, as the original's ``argsort`` order does.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from poc.shared.aisbench import confused_pairs, per_class_counts, read_labelled_outputs
from poc.shared.bins import class_names_for
from poc.shared.errors import OutputSet
from poc.shared.progress import Log

TITLE = "Overall statistical evaluation"


def score(result_dir, label_path, topk: int = 5, allow_missing: bool = False, log: Log | None = None,
          class_names=None) -> dict:
    """Top-k accuracy, per-class top-1 and the most confused pairs; ``class_names`` (a file, one name a line) names
    the classes, by default ``class_names.txt`` beside the label file when preprocess wrote one."""
    log = log or Log(stage="postprocess")
    scored = read_labelled_outputs(result_dir, label_path, allow_missing, log)
    stems, scores, y, missing, num_classes = (scored.stems, scored.scores, scored.labels, scored.missing,
                                              scored.num_classes)
    names = class_names_for(label_path, class_names, num_classes)
    k = min(topk, num_classes)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hit_rank = (order == y[:, None])
    topk_acc = {i: float(hit_rank[:, :i].any(1).mean() * 100) for i in range(1, k + 1)}
    pred = order[:, 0]
    seen, hits = per_class_counts(y, pred, num_classes)
    per_class = [float(hits[c] / seen[c] * 100) if seen[c] else None for c in range(num_classes)]
    pairs = [{"true": t, "predicted": p, "count": len(images)} for t, p, images in confused_pairs(y, pred, num_classes)]
    if names:
        for pair in pairs:
            pair["true_name"], pair["predicted_name"] = names[pair["true"]], names[pair["predicted"]]
    return {"num_images": len(stems), "num_classes": num_classes, "topk": topk_acc, "per_class_top1": per_class,
            "most_confused": pairs, "missing": len(missing), "class_names": names}


def worst_classes(r: dict, count: int = 5) -> list[tuple[str, float]]:
    """The classes with the lowest top-1 (ties: lower index first), by name where known."""
    names = r.get("class_names") or [f"class {c}" for c in range(r["num_classes"])]
    scored = [(acc, c) for c, acc in enumerate(r["per_class_top1"]) if acc is not None]
    return [(names[c], acc) for acc, c in sorted(scored)[:count]]


def modelzoo_percent(percent: float) -> str:
    """The ModelZoo's ``str(round(acc * 100, 2)) + "%"``: "57.0%", "12.5%", "94.81%" (never "57.00%")."""
    return str(round(percent, 2)) + "%"


def result_json(r: dict) -> dict:
    """The ModelZoo schema, then the numbers a program can read."""
    value = [{"key": "Number of images", "value": str(r["num_images"])},
             {"key": "Number of classes", "value": str(r["num_classes"])}]
    value += [{"key": f"Top{i} accuracy", "value": modelzoo_percent(acc)} for i, acc in r["topk"].items()]
    def pct(x):  # a percentage as a program reads it: 98.85, not 98.85000000000001
        return None if x is None else round(x, 6)
    return {"title": TITLE, "value": value,
            "metrics": {"num_images": r["num_images"], "num_classes": r["num_classes"],
                        **{f"top{i}": pct(acc) for i, acc in r["topk"].items()},
                        "missing_outputs": r["missing"], "per_class_top1": [pct(a) for a in r["per_class_top1"]],
                        **({"class_names": r["class_names"]} if r.get("class_names") else {}),
                        "most_confused": r["most_confused"]}}


def postprocess(result_dir, label_path, out_dir, json_name, topk=5, allow_missing=False, log: Log | None = None,
                class_names=None):
    log = log or Log(stage="postprocess")
    start = time.perf_counter()
    out = Path(out_dir) / json_name
    with OutputSet({"result file": out}, {"result folder": result_dir, "label file": label_path,
                                          "class names": class_names}) as outputs:
        r = score(result_dir, label_path, topk, allow_missing, log, class_names)
        outputs.file(out).write_text(json.dumps(result_json(r), indent=2))
    if not log.quiet:
        print(f"{'images':>8} {'classes':>8} " + " ".join(f"{'top-' + str(i):>7}" for i in r["topk"]))
        print(f"{r['num_images']:>8} {r['num_classes']:>8} " + " ".join(f"{a:>6.2f}%" for a in r["topk"].values()))
    log("lowest top-1: " + ", ".join(f"{name} {acc:.1f} %" for name, acc in worst_classes(r)))
    log(f"wrote {out} in {time.perf_counter() - start:.2f} s")
    return r
