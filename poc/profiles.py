"""The models the toolkit serves, one profile each: everything specific to a model, as plain data. Every script
takes ``--profile NAME``; the default is the ModelZoo mmcls CIFAR-100 model, a row like the others whose working folder
is the current one (so every default command and file is the ModelZoo README's). Adding a model is a row here, its
``aipp.conf`` and ``quant.cfg`` in ``config_dir``, and a model module when the architecture is new."""
from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from poc import config
from poc.formats import data_sets
from poc.shared.errors import InputError, run_main

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    dataset: str  # reader: cifar100 | cifar10 | pets
    data_dir: str  # the real data set's folder, as its archive unpacks
    demo_data_dir: str  # where the built-in demo set is written
    eval_split: str
    calib_split: str
    image_hw: int
    num_classes: int
    mean_rgb_255: tuple[float, float, float]
    std_rgb_255: tuple[float, float, float]
    arch: str  # mmcls_resnet_cifar | plain_resnet50 | pruned_resnet50
    model_module: str  # the architecture's module, which holds its facts (layer groups, names)
    weights: str  # pth | ms | ckpt: what export_onnx.py reads for this model
    config_dir: str  # aipp.conf and quant.cfg ("." for the repository root)
    stem: str  # file-name stem: models/{stem}_quant_bs24 ...
    published: dict = field(default_factory=dict)  # published top-1 figures (%), by what they were measured on
    # the Ascend 310P3's published figures for this model, by precision ({} where none are published)
    published_npu: dict = field(default_factory=dict)
    assets: tuple[str, ...] = ()  # published file names (their sha256 in config.PUBLISHED_ASSETS_SHA256)
    batch: int = config.BATCH_SIZE
    index: str | None = None  # a pruned model's channel index file (repository-relative), needed beside its weights
    demo_weights: str = ""  # the demo checkpoint's file name in models/
    # Where this profile's files go: the default profile keeps the ModelZoo's paths (.), every other profile a
    # folder of its own, so running one profile never changes what another reads.
    workdir: str = "."

    def path(self, rel) -> str:
        """``rel``, one of config's paths (relative to the working folder), in this profile's working folder."""
        return str(rel) if self.workdir == "." else "./" + os.path.normpath(os.path.join(self.workdir, str(rel)))

    @property
    def input_shape(self) -> str:
        """AMCT's and ATC's --input_shape: ``input:24,3,32,32``."""
        return self.input_shape_at(self.batch)

    def input_shape_at(self, batch: int) -> str:
        return f"{config.INPUT_NAME}:{batch},{config.IMAGE_CHANNELS},{self.image_hw},{self.image_hw}"

    def config_file(self, name: str) -> tuple[str, str]:
        """(``aipp.conf`` / ``quant.cfg`` for this model, where it came from). A profile whose configs live in the
        working folder (``config_dir`` ".", the ModelZoo's layout) reads ``./NAME`` there, as the ModelZoo scripts
        do, and the one that ships with the scripts when there is none; the others read their own."""
        if self.config_dir == "." and Path(name).is_file():
            return f"./{name}", "the working folder's"
        return str(ROOT / self.config_dir / name), ("the one that ships with the scripts" if self.config_dir == "."
                                                     else f"profile {self.name}'s")

    @property
    def aipp_conf(self) -> Path:
        return Path(self.config_file(config.AIPP_CFG)[0])

    @property
    def quant_cfg(self) -> Path:
        return Path(self.config_file(config.QUANT_CFG)[0])

    @property
    def index_file(self) -> Path | None:
        return ROOT / self.index if self.index else None

    @property
    def demo_checkpoint(self) -> str:
        return self.path(f"{config.MODELS_DIR}/{self.demo_weights}")

    @property
    def quant_save_path(self) -> str:
        """AMCT's --save_path: the quantize stage writes ``{this}_deploy_model.onnx`` and the rest."""
        return f"{self.path(config.MODELS_DIR)}/{self.stem}_quant"

    @property
    def deploy_model(self) -> str:
        return f"{self.quant_save_path}{config.DEPLOY_SUFFIX}"

    @property
    def quant_report(self) -> str:
        return f"{self.quant_save_path}{config.REPORT_SUFFIX}"

    def compiled(self, precision: str) -> str:
        """ATC's --output for the model compiled at ``precision`` (int8 | fp32 | bf16), without its extension:
        ``models/resnet50_quant_bs24`` (the ModelZoo's name for the INT8 one), ``models/resnet50_fp32_bs24``, ..."""
        kind = {"int8": "quant", "fp32": "fp32", "bf16": "bf16"}[precision]
        return f"{self.path(config.MODELS_DIR)}/{self.stem}_{kind}_bs{self.batch}"


DEFAULT = "mmcls-resnet50-cifar100"
# The ModelZoo POC's published Ascend 310P3 figures, shown beside the CPU ones.
_POC_310P3 = {
    "int8": {"precision": "INT8 (AMCT) + AIPP", "batch": 24, "top1": 78.55, "throughput": 14290},
    "fp16": {"precision": "FP16 + AIPP", "batch": 24, "top1": 79.91, "throughput": 9336},
}
PROFILES = {p.name: p for p in (
    Profile(DEFAULT, "ResNet50_mmlab_for_pytorch_for_POC (mmcls ResNet_CIFAR-50, CIFAR-100)", "cifar100",
            "./cifar-100-python", "./demo-data/cifar-100-python", "test", "train", 32, 100,
            (129.304, 124.070, 112.434), (68.170, 65.392, 70.418),  # mmcls resnet50_b16x8_cifar100.py, RGB
            "mmcls_resnet_cifar", "poc.models.mmcls_resnet", "pth", ".", "resnet50",
            published={"FP32 (mmcls)": 79.90, "FP16 on the 310P3": _POC_310P3["fp16"]["top1"],
                       "INT8 on the 310P3": _POC_310P3["int8"]["top1"]},
            published_npu=_POC_310P3, demo_weights="demo_resnet50_cifar100.pth"),
    Profile("ms-resnet50-plain-cifar10", "ResNet50 Residual Distillation (shortcut-free ResNet-50, CIFAR-10)",
            "cifar10", "./cifar-10-batches-py", "./demo-data/cifar-10-batches-py", "test_batch", "data_batch_1", 32, 10,
            tuple(255 * m for m in (0.49139968, 0.48215827, 0.44653124)),  # the authors' dataloader, RGB
            tuple(255 * s for s in (0.24703233, 0.24348505, 0.26158768)),
            "plain_resnet50", "poc.models.plain_resnet", "ms", "profiles/ms-resnet50-plain-cifar10", "resnet50_plain_cifar10",
            published={"FP32 (MindSpore Lite, model card)": 94.46}, assets=("residual_distill_res50_cifar10_bs_1_update.ms",),
            demo_weights="demo_resnet50_plain_cifar10.ms", workdir="./ms-resnet50-plain-cifar10"),
    Profile("ms-resnet50-0.65x-pets", "ResNet50-0.65x (SCOP-pruned ResNet-50, Oxford-IIIT Pet)", "pets",
            "./oxford-iiit-pet", "./demo-data/oxford-iiit-pet", "test.txt", "trainval.txt", 224, 37,
            tuple(255 * m for m in (0.485, 0.456, 0.406)), tuple(255 * s for s in (0.229, 0.224, 0.225)),
            "pruned_resnet50", "poc.models.pruned_resnet", "ckpt", "profiles/ms-resnet50-0.65x-pets", "resnet50_pruned_pets",
            published={"FP32 (MindSpore, model card)": 80.24}, assets=("resnet50-pet-0.65x-80.24.ckpt",),
            index="profiles/ms-resnet50-0.65x-pets/index.txt", demo_weights="demo_resnet50_pruned_pets.ckpt",
            workdir="./ms-resnet50-0.65x-pets"),
)}


def get(name: str | None) -> Profile:
    name = name or DEFAULT
    if name not in PROFILES:
        raise InputError("--profile", f"'{name}' is not one of {', '.join(PROFILES)}")
    return PROFILES[name]


def add_argument(parser, default: str = DEFAULT, dataset: str | None = None) -> None:
    """``--profile``; a script that reads one kind of data set offers only the profiles of that kind."""
    names = [p.name for p in PROFILES.values() if dataset is None or p.dataset == dataset]
    parser.add_argument("--profile", default=default, choices=names, help=f"the model this run is for (default: {default})")


def shell_names(profile: Profile) -> dict[str, str]:
    """config's names with this profile's in their place, for pipeline.sh."""
    names = config.shell_names()
    names.update(QUANT_SAVE_PATH=profile.quant_save_path, COMPILED_INT8=profile.compiled("int8"),
                 COMPILED_FP32=profile.compiled("fp32"), COMPILED_BF16=profile.compiled("bf16"))
    names.update({k: profile.path(getattr(config, k)) for k in ("BIN_DIR", "LABEL_FILE", "PIC_DIR", "CALIB_DIR",
                                                               "MODELS_DIR", "REPORT_HTML", "COMPARE_DIR")})
    names.update(PROFILE=profile.name, DATA_DIR=profile.data_dir, DEMO_DATA_DIR=profile.demo_data_dir,
                 DATASET=profile.dataset, EVAL_SPLIT=profile.eval_split, CALIB_SPLIT=profile.calib_split,
                 EVAL_FILE=str(data_sets.split_path(profile.dataset, ".", profile.eval_split)),
                 CALIB_FILE=str(data_sets.split_path(profile.dataset, ".", profile.calib_split)),
                 INPUT_SHAPE=profile.input_shape,
                 COMPARE_SHAPE=profile.input_shape_at(config.COMPARE_BATCH),
                 AIPP_CONF=str(profile.aipp_conf), QUANT_CONF=str(profile.quant_cfg), WEIGHTS=profile.weights,
                 DEMO_CHECKPOINT=profile.demo_checkpoint, WORK_DIR=profile.path("./"))
    return names


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) in (1, 2) and argv[0] == "--shell":
        print("\n".join(f"{k}={shlex.quote(v)}" for k, v in shell_names(get(argv[1] if len(argv) > 1 else None)).items()))
        return 0
    print("usage: python -m poc.profiles --shell [NAME]   the file names of a profile as shell assignments\n"
          "profiles:\n" + "\n".join(f"  {p.name:<28} {p.title}" for p in PROFILES.values()))
    return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2


if __name__ == "__main__":
    run_main(main)
