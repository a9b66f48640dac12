#!/usr/bin/env python3
"""Stage 2: calibration data for AMCT: float32 NCHW batches of 24 distinct, normalised images per file.

    python3 create_quant_data.py --src_path ./cifar-100-python/train --save_path ./amct_bin_data --amct
"""
import argparse
from pathlib import Path

from poc import config, profiles
from poc.calib_data import create_quant_data, create_quant_data_pets, default_source
from poc.formats.quant_cfg import parse_quant_cfg
from poc.shared.errors import run_main
from poc.shared.progress import Log


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles.add_argument(p)
    p.add_argument("--src_path", default=None,
                   help=f"CIFAR pickle to sample from (default: {config.CIFAR100_DIR}/train if it exists, "
                        "else .../test)")
    p.add_argument("--save_path", default=None, help=f"output folder (default: the profile's, {config.CALIB_DIR})")
    p.add_argument("--amct", action="store_true",
                   help="AMCT calibration data (kept for the ModelZoo command line; always the format written)")
    p.add_argument("--batch_size", type=int, default=config.BATCH_SIZE, help="images per file (default: %(default)s)")
    p.add_argument("--batch_num", type=int, default=None,
                   help=f"number of files (default: batch_num of {config.QUANT_CFG})")
    p.add_argument("--config", default=None,
                   help=f"calibration config giving the default batch_num (default: the profile's; {config.QUANT_CFG}, "
                        "else the one that ships with the scripts)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress or log lines")
    args = p.parse_args()
    log = Log(args.quiet, "calib-data")
    profile = profiles.get(args.profile)
    if args.batch_num is None:
        if args.config is None:
            args.config, whose = profile.config_file("quant.cfg")
            log(f"calibration config: {whose}, {args.config}")
        args.batch_num = parse_quant_cfg(args.config).batch_num
        log(f"batch_num {args.batch_num} from {args.config}")
    if args.batch_size < 1 or args.batch_num < 1:
        p.error("--batch_size and --batch_num must be at least 1")
    args.save_path = args.save_path or profile.path(config.CALIB_DIR)
    if profile.dataset == "pets":  # a folder of images with split files, not a pickle
        create_quant_data_pets(args.src_path or profile.data_dir, profile.calib_split, args.save_path, args.batch_size,
                               args.batch_num, args.seed, log, profile.mean_rgb_255, profile.std_rgb_255)
        return
    src = Path(args.src_path) if args.src_path else default_source(profile.data_dir, profile)
    log(f"source: {src}" + ("" if args.src_path else " (default: the training split when present, else the test split)"))
    create_quant_data(src, args.save_path, args.batch_size, args.batch_num, args.seed, log, profile.mean_rgb_255,
                      profile.std_rgb_255)


if __name__ == "__main__":
    run_main(main)
