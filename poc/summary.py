"""The pipeline's closing summary, read from the files the stages wrote (never from their memory)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .config import (
    COMPILED_FP32,
    COMPILED_INT8,
    DST_FP32,
    DST_INT8,
    PUBLISHED_310P3,
    QUANT_SAVE_PATH,
    REPORT_SUFFIX,
    RESULT_FP32_JSON,
    RESULT_JSON,
    SUMMARY_SUFFIX,
    compiled_model,
)
from .errors import run_main


def _load(path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Print the pipeline summary from its output files.")
    p.add_argument("--result", default=RESULT_JSON)
    p.add_argument("--result_fp32", default=RESULT_FP32_JSON)
    p.add_argument("--infer_summary", default=f"{DST_INT8}{SUMMARY_SUFFIX}")
    p.add_argument("--infer_summary_fp32", default=f"{DST_FP32}{SUMMARY_SUFFIX}")
    p.add_argument("--quant_report", default=f"{QUANT_SAVE_PATH}{REPORT_SUFFIX}")
    p.add_argument("--data", default="", help="data set used (for the record)")
    p.add_argument("--checkpoint", default="", help="checkpoint used (for the record)")
    args = p.parse_args(argv)
    int8, fp32 = _load(args.result), _load(args.result_fp32)
    s8, s32 = _load(args.infer_summary), _load(args.infer_summary_fp32)
    rep = _load(args.quant_report)
    print("\n================ pipeline summary ================")
    if args.data or args.checkpoint:
        print(f"data: {args.data}   checkpoint: {args.checkpoint}")
    print(f"{'model':<22} {'top-1':>8} {'top-5':>8} {'img/s':>9} {'e2e img/s':>10}")
    for name, res, summ in (("INT8 (bs24, AIPP)", int8, s8), ("FP32 (bs24, AIPP)", fp32, s32)):
        if res is None:
            continue
        m = res["metrics"]
        print(f"{name:<22} {m['top1']:>7.2f}% {m.get('top5', float('nan')):>7.2f}% "
              f"{(summ or {}).get('throughput', float('nan')):>9.1f} "
              f"{(summ or {}).get('e2e', {}).get('images_per_s', float('nan')):>10.1f}")
    if int8 and fp32:
        drop = fp32["metrics"]["top1"] - int8["metrics"]["top1"]
        pub = PUBLISHED_310P3
        print(f"INT8 top-1 drop: {drop:+.2f} points on {int8['metrics']['num_images']} images "
              f"(published 310P3: {pub['fp16']['top1']} % FP16 -> {pub['int8']['top1']} % INT8)")
    if s8 and s32 and s32.get("throughput"):
        print(f"INT8 speed-up on the CPU: {s8['throughput'] / s32['throughput']:.2f}x (compute throughput of the "
              "whole inference run; `bash benchmark.sh` measures it properly)")
    if rep and "fidelity" in rep:
        f = rep["fidelity"]
        print(f"fidelity ({f['images']} held-out images): top-1 agreement {f['top1_agreement']:.2f} %, "
              f"mean cosine {f['mean_cosine']:.5f}")
    print("files:")
    for what, path in (("INT8 model", compiled_model(COMPILED_INT8)), ("FP32 model", compiled_model(COMPILED_FP32)),
                       ("INT8 outputs", f"{DST_INT8}/"), ("FP32 outputs", f"{DST_FP32}/"),
                       ("INT8 accuracy", args.result), ("FP32 accuracy", args.result_fp32),
                       ("quantization report", args.quant_report), ("inference summary", args.infer_summary)):
        if Path(path).exists():
            print(f"  {what:<20} {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
