"""Facts shared by every stage. Each one lives here and nowhere else.

``python -m poc.config --shell`` prints the file names as shell assignments, so the shell scripts read them
from here instead of spelling them again.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

# CIFAR-100 per-channel statistics in RGB order, on the 0..255 scale (mmcls resnet50_b16x8_cifar100.py).
MEAN_RGB_255 = (129.304, 124.070, 112.434)
STD_RGB_255 = (68.170, 65.392, 70.418)

# The compiled model's batch (ModelZoo: resnet50_quant_bs24.om) and the image geometry.
BATCH_SIZE = 24
IMAGE_HW = 32
IMAGE_CHANNELS = 3
IMAGE_BYTES = IMAGE_HW * IMAGE_HW * IMAGE_CHANNELS  # 3072: one bin_data/img{i}.bin

# Names of the model's graph input and output (mmdeploy's end2end.onnx).
INPUT_NAME = "input"
OUTPUT_NAME = "output"
ONNX_OPSET = 11
# AMCT's and ATC's --input_shape for the compiled model: "input:24,3,32,32".
INPUT_SHAPE = f"{INPUT_NAME}:{BATCH_SIZE},{IMAGE_CHANNELS},{IMAGE_HW},{IMAGE_HW}"

# Default paths, relative to the working directory, as in the ModelZoo README.
CIFAR100_DIR = "./cifar-100-python"
DEMO_DATA_DIR = "./demo-data/cifar-100-python"
BIN_DIR = "./bin_data"
LABEL_FILE = "./img_label.txt"
# The data set's class names, one a line in class-index order, written by preprocess beside the label file
# (CIFAR's meta / batches.meta, the Pet breeds), so scoring and the report name classes without the data set.
CLASS_NAMES = "class_names.txt"
PIC_DIR = "./pic"
CALIB_DIR = "./amct_bin_data"
MODELS_DIR = "./models"
END2END_ONNX = "end2end.onnx"
QUANT_SAVE_PATH = "./models/resnet50_quant"
QUANT_CFG = "./quant.cfg"
AIPP_CFG = "./aipp.conf"
COMPILED_INT8 = "./models/resnet50_quant_bs24"
COMPILED_FP32 = "./models/resnet50_fp32_bs24"
COMPILED_BF16 = "./models/resnet50_bf16_bs24"  # the float model at BF16 (OpenVINO engine; the NPU's FP16 row)
DEMO_CHECKPOINT = "./models/demo_resnet50_cifar100.pth"
# The pipeline's inference outputs (ais_bench --output ./ --output_dirname NAME) and accuracy files.
DST_INT8 = "dst"
DST_FP32 = "dst_fp32"
DST_BF16 = "dst_bf16"
RESULT_JSON = "result.json"
RESULT_FP32_JSON = "result_fp32.json"
RESULT_BF16_JSON = "result_bf16.json"
REPORT_HTML = "./report.html"  # the results report for a person (report.py)
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

# Published Ascend 310P3 figures of the ModelZoo POC, shown beside the CPU ones.
PUBLISHED_310P3 = {
    "int8": {"precision": "INT8 (AMCT) + AIPP", "batch": 24, "top1": 78.55, "throughput": 14290},
    "fp16": {"precision": "FP16 + AIPP", "batch": 24, "top1": 79.91, "throughput": 9336},
}

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
