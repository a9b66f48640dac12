#!/usr/bin/env bash
# Stage 8: throughput. ModelZoo defaults: --loop 100 --batchsize 24.
#   bash benchmark.sh                 # .om + ais_bench: python3 -m ais_bench --model ... --loop 100 --batchsize 24
#                                     # CPU: compiled INT8 vs FP32, table + benchmark.json
#   bash benchmark.sh --sweep         # also batch sizes 1,8,16,24,32 and benchmark.png
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/poc/common.sh"
exec "$PYTHON" -m poc.benchmark "$@"
