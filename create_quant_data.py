#!/usr/bin/env python3
"""Stage 2: calibration data for AMCT: float32 NCHW batches of 24 distinct, normalised images per file.

    python3 create_quant_data.py --src_path ./cifar-100-python/train --save_path ./amct_bin_data --amct
"""
import argparse

from poc import config, profiles
from poc.calib_data import calibration_split, create_quant_data
from poc.formats import data_sets
from poc.formats.quant_cfg import parse_quant_cfg
from poc.shared.errors import run_main
from poc.shared.progress import Log


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles.add_argument(p)
    p.add_argument("--src_path", default=None,
                   help="the split to sample (a CIFAR pickle, a Pet split file), or the data set's folder: its "
                        f"training split if it exists, else its test split (default: the profile's folder, "
                        f"{profiles.get(None).data_dir})")
    p.add_argument("--save_path", default=None, help=f"output folder (default: the profile's, {config.CALIB_DIR})")
    p.add_argument("--amct", action="store_true",
                   help="AMCT calibration data (kept for the ModelZoo command line; always the format written)")
    p.add_argument("--batch_size", type=int, default=None, help="images per file (default: the profile's batch, 24)")
    p.add_argument("--batch_num", type=int, default=None,
                   help=f"number of files (default: batch_num of ./{config.QUANT_CFG})")
    p.add_argument("--config", default=None,
                   help=f"calibration config giving the default batch_num (default: the profile's; ./{config.QUANT_CFG}, "
                        "else the one that ships with the scripts)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress or log lines")
    args = p.parse_args()
    log = Log(args.quiet, "calib-data")
    profile = profiles.get(args.profile)
    if args.batch_num is None:
        if args.config is None:
            args.config, whose = profile.config_file(config.QUANT_CFG)
            log(f"calibration config: {whose}, {args.config}")
        args.batch_num = parse_quant_cfg(args.config).batch_num
        log(f"batch_num {args.batch_num} from {args.config}")
    args.batch_size = args.batch_size or profile.batch
    if args.batch_size < 1 or args.batch_num < 1:
        p.error("--batch_size and --batch_num must be at least 1")
    args.save_path = args.save_path or profile.path(config.CALIB_DIR)
    src, chosen = calibration_split(profile.dataset, args.src_path or profile.data_dir, profile.calib_split,
                                    profile.eval_split)
    log(f"source: {src}" + (" (the training split when present, else the test split)" if chosen else ""))
    create_quant_data(data_sets.open_split(profile.dataset, src), args.save_path, args.batch_size, args.batch_num,
                      args.seed, log, profile.mean_rgb_255, profile.std_rgb_255)

if __name__ == "__main__":
    run_main(main)
