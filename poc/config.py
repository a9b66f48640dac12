"""Facts shared by every stage. Each one lives here and nowhere else."""

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
PIC_DIR = "./pic"
CALIB_DIR = "./amct_bin_data"
MODELS_DIR = "./models"
END2END_ONNX = "end2end.onnx"
QUANT_SAVE_PATH = "./models/resnet50_quant"
QUANT_CFG = "./quant.cfg"
AIPP_CFG = "./aipp.conf"
COMPILED_INT8 = "./models/resnet50_quant_bs24"
COMPILED_FP32 = "./models/resnet50_fp32_bs24"
DEMO_CHECKPOINT = "./models/demo_resnet50_cifar100.pth"
RESULT_JSON = "result.json"

# AMCT's output suffixes: {save_path}_deploy_model.onnx and {save_path}_fake_quant_model.onnx.
DEPLOY_SUFFIX = "_deploy_model.onnx"
FAKE_QUANT_SUFFIX = "_fake_quant_model.onnx"
REPORT_SUFFIX = "_quant_report.json"

# Exit code for bad input (a file that is missing, malformed or refused).
EXIT_BAD_INPUT = 2
