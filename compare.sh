#!/usr/bin/env bash
# Accuracy comparison, as msit debug compare does it (per layer), or of two inference output folders (per output).
#   bash compare.sh -gm ./models/end2end.onnx -om ./models/resnet50_quant_bs24.onnx -i ./bin_data -o ./compare
#   bash compare.sh --golden-dir ./dst_fp32 --target-dir ./dst --labels ./img_label.txt -o compare_int8_fp32.csv
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/poc/common.sh"
exec "$PYTHON" -m poc.compare "$@"
