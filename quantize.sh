#!/usr/bin/env bash
# Stage 4: INT8 calibration with the ModelZoo's AMCT arguments. amct_onnx when installed, else the CPU fallback.
#   bash quantize.sh --model ./models/end2end.onnx --save_path ./models/resnet50_quant \
#       --input_shape "input:24,3,32,32" --data_dir ./amct_bin_data/ --data_types float32 \
#       --calibration_config ./quant.cfg
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/poc/common.sh"
exec "$PYTHON" -m poc.quantize "$@"
