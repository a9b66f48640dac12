"""Facts shared by every stage. Each one lives here and nowhere else.

``python -m poc.config --shell`` prints the file names as shell assignments, so the shell scripts read them
from here instead of spelling them again.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

# The compiled model's batch (ModelZoo: resnet50_quant_bs24.om), every profile's unless its row says otherwise.
BATCH_SIZE = 24
IMAGE_CHANNELS = 3

# Names of the model's graph input and output (mmdeploy's end2end.onnx).
INPUT_NAME = "input"
OUTPUT_NAME = "output"
ONNX_OPSET = 11

# The stages' file names, relative to a profile's working folder (the ModelZoo README's, for the default profile);
# a model's own names (its data folders, its models' stem) are in its profile row (poc/profiles.py).
BIN_DIR = "./bin_data"
LABEL_FILE = "./img_label.txt"
# The data set's class names, one a line in class-index order, written by preprocess beside the label file
# (CIFAR's meta / batches.meta, the Pet breeds), so scoring and the report name classes without the data set.
CLASS_NAMES = "class_names.txt"
PIC_DIR = "./pic"
CALIB_DIR = "./amct_bin_data"
MODELS_DIR = "./models"
END2END_ONNX = "end2end.onnx"
QUANT_CFG = "quant.cfg"  # the AMCT calibration config a profile's folder holds
AIPP_CFG = "aipp.conf"  # the ATC AIPP config a profile's folder holds
# The pipeline's inference outputs (ais_bench --output ./ --output_dirname NAME) and accuracy files.
DST_INT8 = "dst"
DST_FP32 = "dst_fp32"
DST_BF16 = "dst_bf16"
RESULT_JSON = "result.json"
RESULT_FP32_JSON = "result_fp32.json"
RESULT_BF16_JSON = "result_bf16.json"
REPORT_HTML = "./report.html"  # the results report for a person (report.py)
COMPARE_CSV = "compare_int8_fp32.csv"  # compare.sh per output: INT8 against FP32, image by image
COMPARE_DIR = "./compare"  # compare.sh per layer: {timestamp}/result_{timestamp}.csv, as msit writes them
COMPARE_OWNED = r"[0-9]{14}"  # its timestamp folders
# The pipeline compares the CPU's QDQ model with the FP32 one layer by layer on this many images: enough to locate
# a layer, and the dumps of every tensor stay small (the compiled model would take a whole batch of 24).
COMPARE_BATCH = 8
BENCHMARK_JSON = "benchmark.json"
BENCHMARK_PNG = "benchmark.png"
BENCH_DIR = "bench_out"
# Each stage's own files in its output folders: a re-run replaces these (keeping a user's other files there), and
# `make clean` removes them.
BIN_OWNED = r"img[0-9]+\.bin"  # preprocess: --bin_path
PIC_OWNED = r"img[0-9]+\.png"  # preprocess: --pic_path
CALIB_OWNED = r"calib_[0-9]+\.bin"  # calibration data: --save_path
OUTPUT_OWNED = r".+_[0-9]+\.(txt|npy|bin)"  # the runner: ais_bench's {stem}_{index}.{fmt}
SUMMARY_SUFFIX = "_summary.json"  # ais_bench writes {output_dirname}_summary.json beside the folder

# AMCT's output suffixes: {save_path}_deploy_model.onnx and {save_path}_fake_quant_model.onnx.
DEPLOY_SUFFIX = "_deploy_model.onnx"
FAKE_QUANT_SUFFIX = "_fake_quant_model.onnx"
REPORT_SUFFIX = "_quant_report.json"
# Metadata key the CPU quantizer writes into its QDQ models (so atc_convert.sh can refuse them).
CPU_QUANTIZER_KEY = "poc_quantizer"

# The metadata key (ONNX metadata_props, OpenVINO rt_info) that says which weights a model was made from: the
# export records their sha256, quantization and compilation carry it on, and whatever combines two models checks it.
SOURCE_KEY = "poc_source_sha256"

# Published MindSpore Hub assets (seed cards), to say whether a given file is the published one.
PUBLISHED_ASSETS_SHA256 = {
    "residual_distill_res50_cifar10_bs_1_update.ms": "449498ecf5201d46d4eaee2754d69db89b656573f4e74ab42a9f8597299bb63b",
    "adversarial_pruning.ms": "5c279f018a7e3d3b8cb2ec90717513dae3d4519a8de03447851d68b95ae2eca7",
    "resnet50-pet-0.65x-80.24.ckpt": "b41eb489a62c8c12ff88b7f028bc4a943f29f8e25a0a9ec69b9ed070681340cc",
    "index.txt": "7447206ced1378b34f2f8aeb527d36aa08a938fb42dce779838f7bf1aa4f3c32",  # ResNet50-0.65x's
}

# Exit code for bad input (a file that is missing, malformed or refused).
EXIT_BAD_INPUT = 2


COMPILED_SUFFIXES = (".om", ".onnx", ".xml")  # atc, the ONNX Runtime fallback, the OpenVINO fallback


def compiled_model(prefix) -> Path:
    """The model a run uses for a compiled-model prefix: whichever of ``{prefix}.om`` (atc), ``.onnx`` (ONNX
    Runtime) and ``.xml`` (OpenVINO) the compile stage wrote last; ``.onnx`` when there is none. So an ``.om``
    left from an earlier Ascend run is not picked up by a later CPU compile, nor an ``.xml`` by an ONNX one."""
    found = [Path(f"{prefix}{s}") for s in COMPILED_SUFFIXES if Path(f"{prefix}{s}").is_file()]
    if not found:
        return Path(f"{prefix}.onnx")
    return max(found, key=lambda p: (p.stat().st_mtime_ns, -COMPILED_SUFFIXES.index(p.suffix)))


def shell_names() -> dict[str, str]:
    """The names the shell scripts use, as NAME -> value."""
    return {name: str(value) for name, value in globals().items()
            if name.isupper() and isinstance(value, (str, int)) and not name.startswith("_")}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--shell"]:
        print("\n".join(f"{k}={shlex.quote(v)}" for k, v in shell_names().items()))
        return 0
    if argv[:1] == ["--compiled"] and len(argv) == 2:
        print(compiled_model(argv[1]))
        return 0
    print("usage: python -m poc.config --shell | --compiled PREFIX\n"
          "  --shell      the toolkit's file names and constants as shell assignments\n"
          "  --compiled   the compiled model a run uses for PREFIX (.om when atc wrote it last, else .onnx)")
    return 0 if argv[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main())
