#!/usr/bin/env python3
"""The results report: report.html beside result.json, one self-contained page (charts, thumbnails, no network).

    python3 report.py                                   # the profile's files: ./result.json, ./dst, ./img_label.txt, ./pic
    python3 report.py --fp32_outputs ./dst_fp32 --benchmark ./benchmark.json
"""
import argparse
from pathlib import Path

from poc import config, profiles
from poc.report import Inputs, write_report
from poc.shared.errors import run_main
from poc.shared.progress import Log


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles.add_argument(p)
    p.add_argument("--result", default=None, help=f"the accuracy file (default: the profile's {config.RESULT_JSON})")
    p.add_argument("--outputs", default=None, help=f"the inference outputs (default: the profile's {config.DST_INT8}/)")
    p.add_argument("--labels", default=None, help=f"the label file (default: the profile's {config.LABEL_FILE})")
    p.add_argument("--pics", default=None, help=f"the pictures img{{i}}.png (default: the profile's {config.PIC_DIR})")
    p.add_argument("--class_names", default=None,
                   help="class names, one a line (default: class_names.txt beside the label file, if present)")
    p.add_argument("--fp32_outputs", default=None,
                   help=f"FP32 outputs to compare with (default: the profile's {config.DST_FP32}/, if present)")
    p.add_argument("--benchmark", default=None,
                   help=f"benchmark.sh's results (default: the profile's {config.BENCHMARK_JSON}, if present)")
    p.add_argument("--quant_report", default=None,
                   help="quantize.sh's report (default: the profile's models/..._quant_report.json, if present)")
    p.add_argument("--compare", default=None, help="a per-layer comparison CSV (msit's result_*.csv layout)")
    p.add_argument("--max_gallery", type=int, default=48, help="misclassified images shown at most (default: 48)")
    p.add_argument("--out", default=None, help=f"the report (default: the profile's {config.REPORT_HTML})")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    args = p.parse_args()
    if args.max_gallery < 0:
        p.error("--max_gallery must be 0 or more")
    profile = profiles.get(args.profile)

    def given_or(flag, default):
        return Path(flag) if flag else Path(default)

    def optional(flag, default):  # a given input must exist (the report says so); a default one is used if there
        return Path(flag) if flag else (Path(default) if Path(default).exists() else None)
    inputs = Inputs(result=given_or(args.result, profile.path(config.RESULT_JSON)),
                    outputs=given_or(args.outputs, profile.path(config.DST_INT8)),
                    labels=given_or(args.labels, profile.path(config.LABEL_FILE)),
                    pics=given_or(args.pics, profile.path(config.PIC_DIR)),
                    fp32_outputs=optional(args.fp32_outputs, profile.path(config.DST_FP32)),
                    benchmark=optional(args.benchmark, profile.path(config.BENCHMARK_JSON)),
                    quant_report=optional(args.quant_report, profile.quant_report),
                    compare=Path(args.compare) if args.compare else None,
                    class_names=Path(args.class_names) if args.class_names else None)
    write_report(inputs, args.out or profile.path(config.REPORT_HTML), profile, args.max_gallery,
                 Log(args.quiet, "report"))


if __name__ == "__main__":
    run_main(main)
