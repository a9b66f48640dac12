#!/usr/bin/env python3
"""Oxford-IIIT Pet -> ais_bench input bins for ResNet50-0.65x (profile ms-resnet50-0.65x-pets): each image through the
model's eval transform up to its uint8 stage (shorter side 256, bilinear; center crop 224), 150,528-byte uint8 HWC RGB
bins, a label file (label = CLASS-ID - 1) and PNGs. The normalisation is AIPP's job.

    python3 preprocess_pets.py --src_path ./oxford-iiit-pet --bin_path ./bin_data
"""
import argparse

from poc import config, profiles
from poc.formats import data_sets
from poc.preprocess import preprocess
from poc.shared.errors import run_main
from poc.shared.progress import Log

PETS = "ms-resnet50-0.65x-pets"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles.add_argument(p, default=PETS, dataset="pets")
    p.add_argument("--src_path", default=None,
                   help=f"the data set folder: images/ and annotations/ (default: the profile's, "
                        f"{profiles.get(PETS).data_dir})")
    p.add_argument("--split", default=None,
                   help=f"split file in annotations/ (default: the profile's, {profiles.get(PETS).eval_split})")
    p.add_argument("--bin_path", default=None, help=f"folder for img{{i}}.bin (default: the profile's, {config.BIN_DIR})")
    p.add_argument("--label_path", default=None, help=f"label file (default: the profile's, {config.LABEL_FILE})")
    p.add_argument("--pic_path", default=None, help=f"folder for img{{i}}.png (default: the profile's, {config.PIC_DIR})")
    p.add_argument("--no_pic", action="store_true", help="do not write PNGs")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images of the split")
    p.add_argument("--skip_bad", action="store_true",
                   help="leave out images that cannot be read (counted in the log) instead of stopping")
    p.add_argument("--quiet", action="store_true", help="no progress or log lines")
    args = p.parse_args()
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    profile = profiles.get(args.profile)
    split = data_sets.split_path(profile.dataset, args.src_path or profile.data_dir, args.split or profile.eval_split)
    preprocess(data_sets.open_split(profile.dataset, split),
               args.bin_path or profile.path(config.BIN_DIR), args.label_path or profile.path(config.LABEL_FILE),
               None if args.no_pic else args.pic_path or profile.path(config.PIC_DIR),
               args.limit, args.skip_bad, Log(args.quiet, "preprocess"))


if __name__ == "__main__":
    run_main(main)
