#!/usr/bin/env bash
# The whole flow: preprocess -> calibration data -> export -> quantize -> compile -> infer -> postprocess.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/poc/common.sh"

usage() {
    cat <<'USAGE'
usage: bash pipeline.sh [--demo] [--data DIR] [--checkpoint PTH] [--trust_checkpoint] [--quiet]

Runs every stage with the README's default paths, stops at the first failing stage with its name.

  --demo        use ./cifar-100-python when it exists, else generate the built-in demo data set
                (./demo-data/cifar-100-python)
  --data DIR    CIFAR-100 python folder (default: ./cifar-100-python)
  --checkpoint PTH   mmcls checkpoint (default: $CHECKPOINT, else the demo checkpoint, made when missing:
                     python -m poc.demo_model)
  --trust_checkpoint pass --trust_checkpoint to export_onnx.py
  --quiet       no progress bars
  -h, --help    this help
USAGE
}

DATA="./cifar-100-python"
DEMO=0
QUIET=()
CKPT="${CHECKPOINT:-}"
TRUST=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --demo) DEMO=1 ;;
        --data) DATA="$2"; shift ;;
        --checkpoint) CKPT="$2"; shift ;;
        --trust_checkpoint) TRUST=(--trust_checkpoint) ;;
        --quiet) QUIET=(--quiet) ;;
        -h|--help) usage; exit 0 ;;
        *) echo "pipeline: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

stage() {  # stage NAME command...: run one stage, name it when it fails
    local name="$1"; shift
    echo "==== [$name] $*"
    if ! "$@"; then
        echo "pipeline: stage '$name' failed" >&2
        exit 1
    fi
}

if [[ "$DEMO" == 1 && ! -f "$DATA/test" ]]; then
    DATA="./demo-data/cifar-100-python"
    echo "pipeline: no ./cifar-100-python: using the built-in demo data set in $DATA"
    if [[ ! -f "$DATA/test" ]]; then
        stage sample "$PYTHON" -m poc.sample --out "$DATA" "${QUIET[@]}"
    fi
else
    echo "pipeline: data set $DATA"
fi

stage preprocess "$PYTHON" "$POC_ROOT/preprocess_cifar100.py" --src_path "$DATA/test" --bin_path ./bin_data \
    --label_path ./img_label.txt "${QUIET[@]}"
CALIB_SRC="$DATA/train"; [[ -f "$CALIB_SRC" ]] || CALIB_SRC="$DATA/test"
stage calib-data "$PYTHON" "$POC_ROOT/create_quant_data.py" --src_path "$CALIB_SRC" --save_path ./amct_bin_data \
    --config "$POC_ROOT/quant.cfg" --amct "${QUIET[@]}"

if [[ -n "$CKPT" ]]; then
    echo "pipeline: checkpoint $CKPT"
else
    CKPT="./models/demo_resnet50_cifar100.pth"
    echo "pipeline: no checkpoint given (CHECKPOINT=...): using the demo checkpoint $CKPT, fitted on $DATA" \
         "(made or re-made when it was fitted on other data)"
    stage demo-model "$PYTHON" -m poc.demo_model --data "$DATA" --out "$CKPT" --if_stale "${QUIET[@]}"
fi
stage export "$PYTHON" "$POC_ROOT/export_onnx.py" --checkpoint "$CKPT" --work-dir ./models "${TRUST[@]}" "${QUIET[@]}"
stage quantize bash "$POC_ROOT/quantize.sh" --model ./models/end2end.onnx --save_path ./models/resnet50_quant \
    --input_shape "input:24,3,32,32" --data_dir ./amct_bin_data/ --data_types float32 \
    --calibration_config "$POC_ROOT/quant.cfg" --eval_bins ./bin_data --eval_labels ./img_label.txt "${QUIET[@]}"
stage compile-int8 bash "$POC_ROOT/atc_convert.sh" --framework=5 --model=./models/resnet50_quant_deploy_model.onnx \
    --output=./models/resnet50_quant_bs24 --input_format=NCHW --input_shape="input:24,3,32,32" \
    --insert_op_conf="$POC_ROOT/aipp.conf" --enable_small_channel=1 --op_select_implmode=high_performance --log=error \
    "${QUIET[@]}"
stage compile-fp32 bash "$POC_ROOT/atc_convert.sh" --framework=5 --model=./models/end2end.onnx \
    --output=./models/resnet50_fp32_bs24 --input_format=NCHW --input_shape="input:24,3,32,32" \
    --insert_op_conf="$POC_ROOT/aipp.conf" --enable_small_channel=1 --op_select_implmode=high_performance --log=error \
    "${QUIET[@]}"

# The runtime follows the model file: .om (atc) runs on ais_bench, .onnx (CPU fallback) on ONNX Runtime.
# Whichever the compile stage just wrote is the newer one (an .om left from an earlier Ascend run is not).
compiled() { if [[ -f "$1.om" && ! "$1.om" -ot "$1.onnx" ]]; then echo "$1.om"; else echo "$1.onnx"; fi; }
MODEL_INT8="$(compiled ./models/resnet50_quant_bs24)"
MODEL_FP32="$(compiled ./models/resnet50_fp32_bs24)"
stage infer-int8 bash "$POC_ROOT/infer.sh" --model "$MODEL_INT8" --input ./bin_data --output ./ --output_dirname dst \
    --outfmt TXT "${QUIET[@]}"
stage postprocess-int8 "$PYTHON" "$POC_ROOT/postprocess.py" ./dst/ ./img_label.txt ./ result.json "${QUIET[@]}"
stage infer-fp32 bash "$POC_ROOT/infer.sh" --model "$MODEL_FP32" --input ./bin_data --output ./ --output_dirname dst_fp32 \
    --outfmt TXT "${QUIET[@]}"
stage postprocess-fp32 "$PYTHON" "$POC_ROOT/postprocess.py" ./dst_fp32/ ./img_label.txt ./ result_fp32.json "${QUIET[@]}"
"$PYTHON" -m poc.summary --data "$DATA" --checkpoint "$CKPT"
