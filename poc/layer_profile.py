"""``python -m poc.layer_profile``: where a compiled model spends its time, layer by layer (poc/perf/layer_profile.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from poc import profiles
from poc.config import END2END_ONNX, MODELS_DIR
from poc.perf.layer_profile import print_profile
from poc.shared.errors import InputError, run_main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m poc.layer_profile", description=__doc__.split("\n\n")[0])
    profiles.add_argument(p)
    p.add_argument("--model", required=True, action="append", help="a compiled .onnx or .xml model (repeatable)")
    p.add_argument("--source", default=None, help=f"the float ONNX model the convolutions' sizes come from (default: "
                                                  f"the profile's, {MODELS_DIR}/{END2END_ONNX})")
    p.add_argument("--hw", type=int, default=None, help="input height and width (default: the profile's)")
    p.add_argument("--runs", type=int, default=20, help="timed runs (default: %(default)s)")
    p.add_argument("--top", type=int, default=10, help="slowest layers listed (default: %(default)s)")
    args = p.parse_args(argv)
    profile = profiles.get(args.profile)
    args.source = args.source or profile.path(f"{MODELS_DIR}/{END2END_ONNX}")
    args.hw = args.hw or profile.image_hw
    if args.runs < 1:
        p.error("--runs must be at least 1")
    for model in args.model:
        if not Path(model).is_file():
            raise InputError(model, "no such model file")
        print_profile(profile(model, args.source, args.hw, args.runs), args.top)
    return 0


if __name__ == "__main__":
    run_main(main)
