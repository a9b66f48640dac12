#!/usr/bin/env bash
# Stage 5: compile the model for batch 24 with AIPP, with the ModelZoo's ATC arguments.
#   bash atc_convert.sh --framework=5 --model=models/resnet50_quant_deploy_model.onnx \
#       --output=models/resnet50_quant_bs24 --input_format=NCHW --input_shape="input:24,3,32,32" \
#       --insert_op_conf=./aipp.conf --enable_small_channel=1 --op_select_implmode=high_performance \
#       --soc_version=Ascend310P3 --log=error
# atc when installed (-> .om); else the CPU fallback (-> .onnx with AIPP folded in).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/poc/common.sh"
exec "$PYTHON" -m poc.compile "$@"
