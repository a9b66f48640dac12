#!/usr/bin/env python3
"""Stage 7: score the runner's outputs against the labels into result.json (ModelZoo schema).

    python3 postprocess.py ./dst/ ./img_label.txt ./ result.json
"""
import argparse

from poc.scoring import postprocess
from poc.shared.errors import run_main
from poc.shared.progress import Log


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("result_dir", help="folder of outputs img{i}_0.txt|npy|bin (ais_bench --output_dirname)")
    p.add_argument("label_file", help="img_label.txt")
    p.add_argument("output_dir", help="folder for the result file")
    p.add_argument("result_json", help="result file name, e.g. result.json")
    p.add_argument("--topk", type=int, default=5, help="top-1..top-k accuracies (default: 5)")
    p.add_argument("--allow_missing", action="store_true", help="score images that have outputs, warn about the rest")
    p.add_argument("--class_names", default=None,
                   help="class names, one a line (default: class_names.txt beside the label file, if preprocess wrote it)")
    p.add_argument("--quiet", action="store_true", help="no table, progress or log lines")
    args = p.parse_args()
    if args.topk < 1:
        p.error("--topk must be at least 1")
    postprocess(args.result_dir, args.label_file, args.output_dir, args.result_json, args.topk, args.allow_missing,
                Log(args.quiet, "postprocess"), args.class_names)


if __name__ == "__main__":
    run_main(main)
