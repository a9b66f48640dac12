"""``python -m poc.sample``: write the built-in demo data set of a profile (poc/demo/datasets.py)."""
from __future__ import annotations

import argparse

from poc import profiles
from poc.demo.datasets import write_demo_set
from poc.shared.errors import run_main
from poc.shared.progress import Log


def main():
    p = argparse.ArgumentParser(description="Write the built-in demo data set of a profile, in its data set's format.")
    profiles.add_argument(p)
    p.add_argument("--out", default=None, help=f"output folder (default: the profile's; {profiles.get(None).demo_data_dir})")
    p.add_argument("--train_per_class", type=int, default=None,
                   help="training images per class (default: 30 for CIFAR-100, 300 for CIFAR-10: 3,000 either way; 12 for Pets)")
    p.add_argument("--test_per_class", type=int, default=None,
                   help="test images per class (default: 20 for CIFAR-100, 200 for CIFAR-10: 2,000 either way; 6 for Pets)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    args = p.parse_args()
    profile = profiles.get(args.profile)
    for flag in ("train_per_class", "test_per_class"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag} must be at least 1")
    write_demo_set(profile.dataset, args.out or profile.demo_data_dir, args.train_per_class, args.test_per_class,
                   args.seed, Log(args.quiet, "sample"))


if __name__ == "__main__":
    run_main(main)
