"""The pipeline's closing summary, read from the files the stages wrote (never from their memory)."""
from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np

from poc import profiles
from poc.accuracy import metrics
from poc.config import (
    COMPARE_CSV,
    COMPARE_DIR,
    DST_BF16,
    DST_FP32,
    DST_INT8,
    REPORT_HTML,
    RESULT_BF16_JSON,
    RESULT_FP32_JSON,
    RESULT_JSON,
    SUMMARY_SUFFIX,
    compiled_model,
)
from poc.engines.pick import backend_for
from poc.formats.model_file import same_source
from poc.shared.aisbench import agreement, find_outputs, model_of, read_output_vector
from poc.shared.bins import read_text_file
from poc.shared.errors import run_main
from poc.shared.progress import versus


def _load(path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def output_fidelity(folder, reference) -> tuple[float, float, int] | None:
    """Top-1 agreement (%) and mean cosine of one run's outputs against another's, from their files."""
    if not (Path(folder).is_dir() and Path(reference).is_dir()):
        return None
    a, b = find_outputs(folder), find_outputs(reference)
    stems = sorted(set(a) & set(b))
    if not stems:
        return None
    x = np.stack([read_output_vector(a[s]) for s in stems])
    y = np.stack([read_output_vector(b[s]) for s in stems])
    return (*agreement(y, x), len(stems))


def newest_result(folder) -> Path | None:
    """The newest ``{timestamp}/result_{timestamp}.csv`` under a per-layer comparison's folder (None: there is none)."""
    found = sorted(Path(folder).glob("*/result_*.csv")) if Path(folder).is_dir() else []
    return found[-1] if found else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Print the pipeline summary from its output files.")
    profiles.add_argument(p)
    p.add_argument("--result", default=None, help=f"(default: the profile's {RESULT_JSON})")
    p.add_argument("--result_fp32", default=None, help=f"(default: the profile's {RESULT_FP32_JSON})")
    p.add_argument("--result_bf16", default=None, help=f"(default: the profile's {RESULT_BF16_JSON})")
    p.add_argument("--infer_summary", default=None, help=f"(default: the profile's {DST_INT8}{SUMMARY_SUFFIX})")
    p.add_argument("--infer_summary_fp32", default=None, help=f"(default: the profile's {DST_FP32}{SUMMARY_SUFFIX})")
    p.add_argument("--quant_report", default=None, help=f"(default: {profiles.get(None).quant_report}, or the profile's)")
    p.add_argument("--layer_compare", default=None,
                   help=f"the per-layer comparison's folder (default: the profile's {COMPARE_DIR}): its newest result "
                        "names the first layer below cosine 0.99")
    p.add_argument("--data", default="", help="data set used (for the record)")
    p.add_argument("--checkpoint", default="", help="checkpoint used (for the record)")
    args = p.parse_args(argv)
    profile = profiles.get(args.profile)
    args.quant_report = args.quant_report or profile.quant_report
    args.result = args.result or profile.path(RESULT_JSON)
    args.result_fp32 = args.result_fp32 or profile.path(RESULT_FP32_JSON)
    args.result_bf16 = args.result_bf16 or profile.path(RESULT_BF16_JSON)
    args.infer_summary = args.infer_summary or profile.path(f"{DST_INT8}{SUMMARY_SUFFIX}")
    args.infer_summary_fp32 = args.infer_summary_fp32 or profile.path(f"{DST_FP32}{SUMMARY_SUFFIX}")
    dst_int8, dst_fp32, dst_bf16 = (profile.path(d) for d in (DST_INT8, DST_FP32, DST_BF16))
    int8, fp32, bf16 = _load(args.result), _load(args.result_fp32), _load(args.result_bf16)
    s8, s32 = _load(args.infer_summary), _load(args.infer_summary_fp32)
    s16 = _load(f"{dst_bf16}{SUMMARY_SUFFIX}")
    bf16_model = compiled_model(profile.compiled("bf16"))
    if bf16 is not None and not (bf16_model.is_file() and bf16_model.stat().st_mtime <= Path(args.result_bf16).stat().st_mtime
                                 and compiled_model(profile.compiled("fp32")).stat().st_mtime <= bf16_model.stat().st_mtime):
        bf16 = None  # a BF16 result from an earlier run with another model: not this run's
    rep = _load(args.quant_report)
    same_source({f"the {name} run's model": model_of(summ) for name, summ in (("INT8", s8), ("FP32", s32),
                                                                                 ("BF16", s16 if bf16 else None))})
    print("\n================ pipeline summary ================")
    print(f"profile: {profile.name} ({profile.title})")
    if args.data or args.checkpoint:
        print(f"data: {args.data}   checkpoint: {args.checkpoint}")
    print(f"{'model':<22} {'top-1':>8} {'top-5':>8} {'img/s':>9} {'e2e img/s':>10}")
    for name, res, summ in ((f"INT8 (bs{profile.batch}, AIPP)", int8, s8), (f"BF16 (bs{profile.batch}, AIPP)", bf16, s16),
                            (f"FP32 (bs{profile.batch}, AIPP)", fp32, s32)):
        if res is None:
            continue
        m = res["metrics"]
        print(f"{name:<22} {m['top1']:>7.2f}% {m.get('top5', float('nan')):>7.2f}% "
              f"{(summ or {}).get('throughput', float('nan')):>9.1f} "
              f"{(summ or {}).get('e2e', {}).get('images_per_s', float('nan')):>10.1f}")
    if int8 and fp32:
        published = ", ".join(f"{what} {top1:.2f} %" for what, top1 in profile.published.items())
        print(f"INT8 top-1 vs FP32: {versus(int8['metrics']['top1'], fp32['metrics']['top1'])} on "
              f"{int8['metrics']['num_images']} images (published top-1: {published})")
    if bf16 is not None:
        fid = output_fidelity(dst_bf16, dst_fp32)
        if fid:
            print(f"BF16 vs FP32 ({fid[2]} images): top-1 agreement {fid[0]:.2f} %, mean cosine {fid[1]:.5f} "
                  f"(the CPU's counterpart of the 310P3's FP16 row)")
    if s8 and s32 and s32.get("throughput"):
        engines = " vs ".join(dict.fromkeys(backend_for(model_of(s) or "").name() for s in (s8, s32)))
        print(f"INT8 speed-up over FP32 on the CPU ({engines}): {s8['throughput'] / s32['throughput']:.2f}x (compute "
              "throughput of the whole inference run; `bash benchmark.sh` measures it properly)")
    if rep and "fidelity" in rep:
        f = rep["fidelity"]
        print(f"fidelity ({f['images']} test images): top-1 agreement {f['top1_agreement']:.2f} %, "
              f"mean cosine {f['mean_cosine']:.5f}")
    layer_csv = newest_result(args.layer_compare or profile.path(COMPARE_DIR))
    if layer_csv is not None:
        layers = metrics.cosine_rows(list(csv.DictReader(io.StringIO(read_text_file(layer_csv, "comparison CSV")))))
        first = metrics.first_below(layers)
        print(f"per layer, INT8 vs FP32 ({len(layers)} tensors): first below cosine {metrics.COSINE_FLOOR}: "
              + (f"{first[0]} ({first[1]:.6f})" if first else "none"))
    print("files:")
    for what, path in (("INT8 model", compiled_model(profile.compiled("int8"))),
                       ("FP32 model", compiled_model(profile.compiled("fp32"))),
                       ("BF16 model", bf16_model if bf16 is not None else Path("/nonexistent")),
                       ("INT8 outputs", f"{dst_int8}/"), ("FP32 outputs", f"{dst_fp32}/"),
                       ("INT8 accuracy", args.result), ("FP32 accuracy", args.result_fp32),
                       ("quantization report", args.quant_report), ("inference summary", args.infer_summary),
                       ("per-image comparison", profile.path(COMPARE_CSV)),
                       ("per-layer comparison", layer_csv or Path("/nonexistent")),
                       ("results report", profile.path(REPORT_HTML))):
        if Path(path).exists():
            print(f"  {what:<20} {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
