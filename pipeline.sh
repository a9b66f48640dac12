#!/usr/bin/env bash
# The whole flow: preprocess -> calibration data -> export -> quantize -> compile -> infer -> postprocess -> compare
# -> report -> summary.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/poc/common.sh"

usage() {
    cat <<'USAGE'
usage: bash pipeline.sh [--profile NAME] [--demo] [--data DIR] [--checkpoint FILE] [--trust_checkpoint] [--engine E]
                       [--from STAGE] [--quiet]

Runs every stage with the README's default paths, stops at the first failing stage with its name and its
exit code (2: bad input, 1: a stage or tool failed).

  --profile NAME  the model (default: mmcls-resnet50-cifar100; `python -m poc.profiles` lists them)
  --demo        use the profile's data set when it exists, else generate the built-in demo data set
                (./demo-data/...)
  --data DIR    the data set's folder (default: the profile's: ./cifar-100-python, ./cifar-10-batches-py or
                ./oxford-iiit-pet)
  --checkpoint FILE  the weights: an mmcls .pth, the plain-ResNet profile's .ms or the Pet profile's .ckpt
                     (default: $CHECKPOINT, else the demo checkpoint, made when missing: python -m poc.demo_model
                     --profile NAME); a given one is read and checked before the first stage
  --trust_checkpoint pass --trust_checkpoint to export_onnx.py
  --engine E    CPU engine of the compile stage: onnxruntime (default, or $POC_ENGINE) or openvino; with
                openvino the float model also runs at BF16 (ATC's force_fp16: the NPU's FP16 row), a third row
  --from STAGE  a re-run: skip the stages before STAGE (preprocess, calib-data, demo-model, export, quantize,
                compile, infer, postprocess, compare, report, summary) and use what they wrote last time
  --quiet       no progress bars
  -h, --help    this help
USAGE
}

PROFILE_NAME="mmcls-resnet50-cifar100"
DATA=""
DEMO=0
QUIET=()
CKPT="${CHECKPOINT:-}"
TRUST=()
FROM=""
STAGES=(preprocess calib-data demo-model export quantize compile infer postprocess compare report summary)
while [[ $# -gt 0 ]]; do
    case "$1" in
        --demo) DEMO=1 ;;
        --profile) PROFILE_NAME="$2"; shift ;;
        --data) DATA="$2"; shift ;;
        --checkpoint) CKPT="$2"; shift ;;
        --trust_checkpoint) TRUST=(--trust_checkpoint) ;;
        --engine) export POC_ENGINE="$2"; shift ;;
        --from) FROM="$2"; shift ;;
        --quiet) QUIET=(--quiet) ;;
        -h|--help) usage; exit 0 ;;
        *) echo "pipeline: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# File names and constants (BIN_DIR, LABEL_FILE, COMPILED_INT8, ...) come from poc/config.py, their one home, and
# the profile's (data set, splits, AIPP and quant configs, model names) from poc/profiles.py.
NAMES="$("$PYTHON" -m poc.profiles --shell "$PROFILE_NAME")"
eval "$NAMES"
DATA="${DATA:-$DATA_DIR}"
P=(--profile "$PROFILE")

if [[ -n "$FROM" && " ${STAGES[*]} " != *" $FROM "* ]]; then
    echo "pipeline: --from '$FROM': not one of ${STAGES[*]}" >&2
    exit 2
fi
REACHED=$([[ -z "$FROM" ]] && echo 1 || echo 0)
TIMES=()

stage() {  # stage NAME command...: run one stage (or skip it, before --from's); when it fails, name it and exit
    local name="$1"; shift
    if [[ "$REACHED" == 0 && ( "$name" == "$FROM" || "$name" == "$FROM"-* ) ]]; then REACHED=1; fi
    if [[ "$REACHED" == 0 && "$name" != check-weights && "$name" != sample ]]; then
        echo "==== [$name] skipped (--from $FROM): its outputs from the last run are used"
        return 0
    fi
    echo "==== [$name] $*"
    local code=0 start=$SECONDS
    "$@" || code=$?
    TIMES+=("$name $((SECONDS - start)) s")
    if [[ "$code" != 0 ]]; then
        echo "pipeline: stage '$name' failed (exit code $code)" >&2
        exit "$code"
    fi
}

# Every input is checked before the first stage: a bad checkpoint stops the run now, not after minutes of work.
if [[ -n "$CKPT" ]]; then
    if [[ "$WEIGHTS" == ms ]]; then WEIGHTS_ARGS=(--model "$CKPT"); else WEIGHTS_ARGS=(--checkpoint "$CKPT"); fi
    stage check-weights "$PYTHON" "$POC_ROOT/export_onnx.py" "${P[@]}" "${WEIGHTS_ARGS[@]}" --check "${TRUST[@]}" \
        "${QUIET[@]}"
fi
if [[ "$DEMO" == 0 && ! -e "$DATA/$EVAL_FILE" ]]; then
    echo "pipeline: no test split at $DATA/$EVAL_FILE: unpack the data set's archive here, give --data DIR," \
         "or run with --demo (the built-in demo data set)" >&2
    exit 2
fi
if [[ "$DEMO" == 1 && ! -f "$DATA/$EVAL_FILE" ]]; then
    echo "pipeline: no $DATA: using the built-in demo data set in $DEMO_DATA_DIR"
    DATA="$DEMO_DATA_DIR"
    if [[ ! -f "$DATA/$EVAL_FILE" ]]; then
        stage sample "$PYTHON" -m poc.sample "${P[@]}" --out "$DATA" "${QUIET[@]}"
    fi
else
    echo "pipeline: data set $DATA"
fi

if [[ "$DATASET" == pets ]]; then
    stage preprocess "$PYTHON" "$POC_ROOT/preprocess_pets.py" "${P[@]}" --src_path "$DATA" --split "$EVAL_SPLIT" \
        --bin_path "$BIN_DIR" --label_path "$LABEL_FILE" --pic_path "$PIC_DIR" "${QUIET[@]}"
    CALIB_SRC="$DATA"  # the image folder; the profile names its trainval split
else
    stage preprocess "$PYTHON" "$POC_ROOT/preprocess_cifar100.py" "${P[@]}" --src_path "$DATA/$EVAL_SPLIT" \
        --bin_path "$BIN_DIR" --label_path "$LABEL_FILE" --pic_path "$PIC_DIR" "${QUIET[@]}"
    CALIB_SRC="$DATA/$CALIB_SPLIT"; [[ -f "$CALIB_SRC" ]] || CALIB_SRC="$DATA/$EVAL_SPLIT"
fi
stage calib-data "$PYTHON" "$POC_ROOT/create_quant_data.py" "${P[@]}" --src_path "$CALIB_SRC" \
    --save_path "$CALIB_DIR" --config "$QUANT_CONF" --amct "${QUIET[@]}"

if [[ -n "$CKPT" ]]; then
    echo "pipeline: checkpoint $CKPT"
else
    CKPT="$DEMO_CHECKPOINT"
    echo "pipeline: no checkpoint given (CHECKPOINT=...): using the demo checkpoint $CKPT, fitted on $DATA" \
         "(made or re-made when it was fitted on other data)"
    stage demo-model "$PYTHON" -m poc.demo_model "${P[@]}" --data "$DATA" --out "$CKPT" --if_stale "${QUIET[@]}"
fi
if [[ "$WEIGHTS" == ms ]]; then WEIGHTS_ARGS=(--model "$CKPT"); else WEIGHTS_ARGS=(--checkpoint "$CKPT"); fi
stage export "$PYTHON" "$POC_ROOT/export_onnx.py" "${P[@]}" "${WEIGHTS_ARGS[@]}" --work-dir "$MODELS_DIR" \
    "${TRUST[@]}" "${QUIET[@]}"
stage quantize bash "$POC_ROOT/quantize.sh" "${P[@]}" --model "$MODELS_DIR/$END2END_ONNX" \
    --save_path "$QUANT_SAVE_PATH" --input_shape "$INPUT_SHAPE" --data_dir "$CALIB_DIR/" --data_types float32 \
    --calibration_config "$QUANT_CONF" --eval_bins "$BIN_DIR" --eval_labels "$LABEL_FILE" "${QUIET[@]}"
compile() {  # compile NAME MODEL OUTPUT [ATC flags...]: one atc_convert.sh stage, the batch and AIPP of the profile
    local name="$1" model="$2" output="$3"; shift 3
    stage "$name" bash "$POC_ROOT/atc_convert.sh" --framework=5 --model="$model" --output="$output" \
        --input_format=NCHW --input_shape="$INPUT_SHAPE" --insert_op_conf="$AIPP_CONF" --enable_small_channel=1 \
        --op_select_implmode=high_performance --log=error "$@" "${QUIET[@]}"
}
compile compile-int8 "$QUANT_SAVE_PATH$DEPLOY_SUFFIX" "$COMPILED_INT8"
compile compile-fp32 "$MODELS_DIR/$END2END_ONNX" "$COMPILED_FP32"
if [[ "${POC_ENGINE:-onnxruntime}" == openvino ]]; then
    compile compile-bf16 "$MODELS_DIR/$END2END_ONNX" "$COMPILED_BF16" --precision_mode=force_fp16
fi

# The runtime follows the model file: .om (atc) runs on ais_bench, .onnx (CPU fallback) on ONNX Runtime;
# poc.config decides which one the compile stage wrote last (the same rule the summary and benchmark use).
MODEL_INT8="$("$PYTHON" -m poc.config --compiled "$COMPILED_INT8")"
MODEL_FP32="$("$PYTHON" -m poc.config --compiled "$COMPILED_FP32")"
stage infer-int8 bash "$POC_ROOT/infer.sh" --model "$MODEL_INT8" --input "$BIN_DIR" --output "$WORK_DIR" \
    --output_dirname "$DST_INT8" --outfmt TXT "${QUIET[@]}"
stage postprocess-int8 "$PYTHON" "$POC_ROOT/postprocess.py" "${WORK_DIR%/}/$DST_INT8/" "$LABEL_FILE" "$WORK_DIR" "$RESULT_JSON" "${QUIET[@]}"
stage infer-fp32 bash "$POC_ROOT/infer.sh" --model "$MODEL_FP32" --input "$BIN_DIR" --output "$WORK_DIR" \
    --output_dirname "$DST_FP32" --outfmt TXT "${QUIET[@]}"
stage postprocess-fp32 "$PYTHON" "$POC_ROOT/postprocess.py" "${WORK_DIR%/}/$DST_FP32/" "$LABEL_FILE" "$WORK_DIR" "$RESULT_FP32_JSON" \
    "${QUIET[@]}"
# INT8 against FP32: image by image beside the accuracy files, and layer by layer on the first batch (msit's CSV)
stage compare-outputs bash "$POC_ROOT/compare.sh" --golden-dir "${WORK_DIR%/}/$DST_FP32" --target-dir "${WORK_DIR%/}/$DST_INT8" \
    --labels "$LABEL_FILE" -o "${WORK_DIR%/}/$COMPARE_CSV" "${QUIET[@]}"
if [[ "$MODEL_INT8" == *.om ]]; then  # the NPU's model: msit compares it
    LAYERS_ARGS=(-om "$MODEL_INT8" -is "$INPUT_SHAPE")
else  # the CPU's QDQ model on a few images (its batch is free)
    LAYERS_ARGS=(-om "$QUANT_SAVE_PATH$DEPLOY_SUFFIX" -is "$COMPARE_SHAPE")
fi
stage compare-layers bash "$POC_ROOT/compare.sh" "${P[@]}" -gm "$MODELS_DIR/$END2END_ONNX" "${LAYERS_ARGS[@]}" \
    -i "$BIN_DIR" -o "$COMPARE_DIR" "${QUIET[@]}"
LAYER_CSV="$(ls -1 "$COMPARE_DIR"/*/result_*.csv 2>/dev/null | sort | tail -n 1)"
if [[ "${POC_ENGINE:-onnxruntime}" == openvino ]]; then
    MODEL_BF16="$("$PYTHON" -m poc.config --compiled "$COMPILED_BF16")"
    stage infer-bf16 bash "$POC_ROOT/infer.sh" --model "$MODEL_BF16" --input "$BIN_DIR" --output "$WORK_DIR" \
        --output_dirname "$DST_BF16" --outfmt TXT "${QUIET[@]}"
    stage postprocess-bf16 "$PYTHON" "$POC_ROOT/postprocess.py" "${WORK_DIR%/}/$DST_BF16/" "$LABEL_FILE" "$WORK_DIR" "$RESULT_BF16_JSON" \
        "${QUIET[@]}"
fi
stage report "$PYTHON" "$POC_ROOT/report.py" "${P[@]}" --result "${WORK_DIR%/}/$RESULT_JSON" \
    --outputs "${WORK_DIR%/}/$DST_INT8" --labels "$LABEL_FILE" --pics "$PIC_DIR" --fp32_outputs "${WORK_DIR%/}/$DST_FP32" \
    --quant_report "$QUANT_SAVE_PATH$REPORT_SUFFIX" ${LAYER_CSV:+--compare "$LAYER_CSV"} --out "$REPORT_HTML" "${QUIET[@]}"
stage summary "$PYTHON" -m poc.summary "${P[@]}" --data "$DATA" --checkpoint "$CKPT"
echo "time per stage: $(IFS=,; echo "${TIMES[*]}" | sed 's/,/, /g') (total $SECONDS s)"
