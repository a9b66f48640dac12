"""``python -m poc.demo_model``: make the demo weights of a profile (poc/demo/weights.py)."""
from __future__ import annotations

import argparse

from poc import profiles
from poc.demo.weights import is_up_to_date, make_demo_model
from poc.shared.errors import run_main
from poc.shared.progress import Log


def main():
    default = profiles.get(None)  # the help texts name the default profile's files
    p = argparse.ArgumentParser(description="Make the demo weights for the demo data set, in the profile's weights "
                                            "format (an mmcls .pth, a MindSpore Lite .ms, a MindSpore .ckpt).")
    profiles.add_argument(p)
    p.add_argument("--data", default=None, help=f"data set folder (default: the profile's demo set; {default.demo_data_dir})")
    p.add_argument("--out", default=None, help=f"checkpoint to write (default: the profile's; {default.demo_checkpoint})")
    p.add_argument("--seed", type=int, default=0, help="backbone seed (default: 0)")
    p.add_argument("--bn_images", type=int, default=256, help="images for BN statistics (default: 256; at most 128 of 224x224)")
    p.add_argument("--max_train", type=int, default=3000, help="training images used at most (default: 3000)")
    p.add_argument("--if_stale", action="store_true",
                   help="do nothing when --out is already a demo checkpoint fitted on this data")
    p.add_argument("--quiet", action="store_true", help="no progress or log lines")
    args = p.parse_args()
    profile = profiles.get(args.profile)
    data = args.data or profile.demo_data_dir
    out = args.out or profile.demo_checkpoint
    if args.if_stale and is_up_to_date(data, out, profile):
        Log(args.quiet, "demo-model")(f"{out} is up to date for {data}")
        return
    make_demo_model(data, out, args.seed, args.bn_images, args.max_train, Log(args.quiet, "demo-model"), profile)


if __name__ == "__main__":
    run_main(main)
