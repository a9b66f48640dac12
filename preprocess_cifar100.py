#!/usr/bin/env python3
"""Stage 1: turn the CIFAR-100 test pickle into ais_bench input bins, a label file and PNGs.

    python3 preprocess_cifar100.py --src_path ./cifar-100-python/test --bin_path ./bin_data
"""
import argparse

from poc import config, profiles
from poc.formats import data_sets
from poc.preprocess import preprocess
from poc.shared.errors import run_main
from poc.shared.progress import Log


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles.add_argument(p)
    p.add_argument("--src_path", default=None,
                   help=f"CIFAR-100 test pickle, or CIFAR-10 test_batch (default: {profiles.get(None).data_dir}/test; the "
                        "profile's test split)")
    p.add_argument("--bin_path", default=None, help=f"folder for img{{i}}.bin (default: the profile's, {config.BIN_DIR})")
    p.add_argument("--label_path", default=None, help=f"label file (default: the profile's, {config.LABEL_FILE})")
    p.add_argument("--pic_path", default=None, help=f"folder for img{{i}}.png (default: the profile's, {config.PIC_DIR})")
    p.add_argument("--no_pic", action="store_true", help="do not write PNGs")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--quiet", action="store_true", help="no progress or log lines")
    args = p.parse_args()
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    profile = profiles.get(args.profile)
    if profile.dataset not in ("cifar100", "cifar10"):
        p.error(f"--profile {profile.name}: not a CIFAR data set")
    src = args.src_path or data_sets.split_path(profile.dataset, profile.data_dir, profile.eval_split)
    preprocess(data_sets.open_split(profile.dataset, src),
               args.bin_path or profile.path(config.BIN_DIR), args.label_path or profile.path(config.LABEL_FILE),
               None if args.no_pic else args.pic_path or profile.path(config.PIC_DIR),
               args.limit, log=Log(args.quiet, "preprocess"))


if __name__ == "__main__":
    run_main(main)
