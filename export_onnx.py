#!/usr/bin/env python3
"""Stage 3: the model's weights -> models/end2end.onnx (what mmdeploy's tools/deploy.py writes): an mmcls .pth
(the default profile), a MindSpore Lite .ms (--model, ms-resnet50-plain-cifar10) or a MindSpore .ckpt with its
index.txt (ms-resnet50-0.65x-pets).

    python3 export_onnx.py --checkpoint resnet50_b16x8_cifar100_20210528-67b58a1b.pth --work-dir ./models
    python3 export_onnx.py --profile ms-resnet50-plain-cifar10 --model residual_distill_res50_cifar10_bs_1_update.ms
    python3 export_onnx.py --profile ms-resnet50-0.65x-pets --checkpoint resnet50-pet-0.65x-80.24.ckpt
"""
import argparse
from pathlib import Path

from poc import config, profiles
from poc.export import (
    ExportError,
    build_pruned,
    choose_exporter,
    export_ms,
    export_onnx,
    export_pruned,
    random_model,
    require_checkpoint,
)
from poc.formats.ms_lite import read_ms
from poc.formats.ms_lite_onnx import to_onnx
from poc.formats.pth import TRUST_FLAG
from poc.models.mmcls_resnet import build_model
from poc.shared.errors import run_main
from poc.shared.progress import Log


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    profiles.add_argument(p)
    p.add_argument("--checkpoint", default=None,
                   help="mmcls / mmpretrain checkpoint (.pth); for a MindSpore-checkpoint profile its .ckpt")
    p.add_argument("--index", default=None,
                   help="a pruned model's channel index file (default: the one that ships with the profile)")
    p.add_argument("--model", default=None, metavar="FILE.ms",
                   help="a MindSpore Lite model (.ms, Lite 1.0/1.1 schema) to translate instead of a checkpoint")
    p.add_argument("--work-dir", "--work_dir", dest="work_dir", default=None,
                   help=f"output folder (default: the profile's, {config.MODELS_DIR})")
    p.add_argument("--output", default=config.END2END_ONNX, help="file name in --work-dir (default: %(default)s)")
    p.add_argument("--exporter", choices=("auto", "native", "mmdeploy"), default="auto",
                   help="auto: mmdeploy when mmdeploy + mmpretrain are importable, else native (default: auto)")
    p.add_argument("--config", default=None,
                   help="mmpretrain model config for the mmdeploy exporter (default: mmpretrain's "
                        "resnet/resnet50_8xb16_cifar100.py)")
    p.add_argument(TRUST_FLAG, action="store_true",
                   help="load a checkpoint that weights-only loading refuses (runs code from it: trusted files only)")
    p.add_argument("--random_init", action="store_true", help="random weights instead of a checkpoint (needs --seed)")
    p.add_argument("--seed", type=int, default=None, help="seed for --random_init")
    p.add_argument("--num_classes", type=int, default=100, help="classes for --random_init (default: 100)")
    p.add_argument("--check", action="store_true",
                   help="only read and check the weights, as export would, and write nothing (pipeline.sh does this "
                        "before its first stage)")
    p.add_argument("--quiet", action="store_true", help="no log lines")
    args = p.parse_args()
    log = Log(args.quiet, "export")
    profile = profiles.get(args.profile)
    args.work_dir = args.work_dir or profile.path(config.MODELS_DIR)
    if profile.weights == "ms" and args.model is None:
        p.error(f"--profile {profile.name} exports from its MindSpore Lite model: give --model FILE.ms "
                f"(the published asset: {', '.join(profile.assets)})")
    if args.model is not None:
        if args.checkpoint is not None or args.random_init:
            p.error("--model (a .ms file) replaces --checkpoint / --random_init")
        if args.check:
            to_onnx(read_ms(args.model), profile.image_hw)
            log(f"{args.model}: read and checked (MindSpore Lite, {profile.image_hw}x{profile.image_hw} input)")
            return
        export_ms(args.model, Path(args.work_dir) / args.output, log, mean=profile.mean_rgb_255, std=profile.std_rgb_255,
                  max_hw=profile.image_hw)
        return
    if profile.weights == "ckpt":
        if args.checkpoint is None:
            p.error(f"--profile {profile.name} exports from its MindSpore checkpoint: give --checkpoint FILE.ckpt "
                    f"(the published asset: {', '.join(profile.assets)})")
        if args.check:
            build_pruned(args.checkpoint, args.index or profile.index_file, log)
            log(f"{args.checkpoint}: read and checked with {args.index or profile.index_file}")
            return
        export_pruned(args.checkpoint, args.index or profile.index_file,
                      Path(args.work_dir) / args.output, profile.image_hw, log, profile.mean_rgb_255,
                      profile.std_rgb_255)
        return
    require_checkpoint(args.checkpoint, args.random_init, args.seed)
    if args.random_init:
        model, desc = random_model(args.num_classes, args.seed), f"random_init seed {args.seed}"
        log(f"model: random weights (seed {args.seed}), {args.num_classes} classes")
    else:
        model, _ = build_model(args.checkpoint, args.trust_checkpoint, log=log)
        if args.check:
            log(f"{args.checkpoint}: read and checked ({model.head.fc.out_features} classes)")
            return
        desc = str(Path(args.checkpoint).resolve())
        log(f"model: {args.checkpoint}, {model.head.fc.out_features} classes")
    exporter = choose_exporter(args.exporter, log)
    if exporter == "mmdeploy" and args.random_init:
        raise ExportError("--random_init works with the native exporter only")
    export_onnx(model, Path(args.work_dir) / args.output, desc, exporter, args.checkpoint, args.config, log,
                profile.image_hw, profile.mean_rgb_255, profile.std_rgb_255)


if __name__ == "__main__":
    run_main(main)
