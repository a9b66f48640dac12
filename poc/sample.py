"""``python -m poc.sample``: write the built-in demo data set of a profile (poc/demo/datasets.py)."""
from __future__ import annotations

import argparse

from poc import profiles
from poc.config import DEMO_DATA_DIR
from poc.demo.datasets import write_demo_dataset, write_demo_pets
from poc.shared.errors import run_main
from poc.shared.progress import Log


def main():
    p = argparse.ArgumentParser(description="Write the built-in demo data set in CIFAR-100 python format.")
    profiles.add_argument(p)
    p.add_argument("--out", default=None, help=f"output folder (default: the profile's; {DEMO_DATA_DIR})")
    p.add_argument("--train_per_class", type=int, default=None,
                   help="training images per class (default: 30 for CIFAR-100, 300 for CIFAR-10: 3,000 either way)")
    p.add_argument("--test_per_class", type=int, default=None,
                   help="test images per class (default: 20 for CIFAR-100, 200 for CIFAR-10: 2,000 either way)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    args = p.parse_args()
    profile = profiles.get(args.profile)
    if profile.dataset == "pets":
        write_demo_pets(args.out or profile.demo_data_dir, args.train_per_class or 12, args.test_per_class or 6,
                        args.seed, Log(args.quiet, "sample"))
        return
    scale = 10 if profile.dataset == "cifar10" else 1
    args.train_per_class = args.train_per_class or 30 * scale
    args.test_per_class = args.test_per_class or 20 * scale
    if args.train_per_class < 1 or args.test_per_class < 1:
        p.error("--train_per_class and --test_per_class must be at least 1")
    write_demo_dataset(args.out or profile.demo_data_dir, args.train_per_class, args.test_per_class, args.seed,
                       Log(args.quiet, "sample"), cifar10=profile.dataset == "cifar10")


if __name__ == "__main__":
    run_main(main)
