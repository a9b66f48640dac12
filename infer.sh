#!/usr/bin/env bash
# Stage 6: batch inference with ais_bench's arguments.
#   bash infer.sh --model ./models/resnet50_quant_bs24.onnx --input ./bin_data --output ./ \
#       --output_dirname dst --outfmt TXT
# An .om model runs `python3 -m ais_bench` with these arguments; an .onnx model runs the CPU runner.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/poc/common.sh"
exec "$PYTHON" -m poc.runner "$@"
