#!/usr/bin/env bash
# The prepared GPU run: every GPU figure the open issues ask for, in one device call.
#
# On the device machine (the Dask and pytorch-forecasting wheels: fill .whl once with
# `bash ../shared/device/wheels.sh numba==0.68.1 llvmlite==0.50.0`, carry .whl; the image has
# no Numba, and without it the host side runs the plain NumPy kernels), from the repository root:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
#   bash benchmarks/gpu_session.sh            # logs and JSON lines under $OUT
#
# Steps, each under its own time limit so that one slow step cannot eat the others (about
# 9 minutes in all, inside one 10-minute call):
#   1. kernels: CuPy vs NumPy on fresh random inputs, then the fused policy kernel's
#      bandwidth against a device copy on 100M items (issue 4);
#   2. forecaster: pytorch-forecasting's pipeline vs ours on the same data and model, training
#      samples/s and prediction series/s, and 1,000,000 series predicted (issue 3);
#   3. the plan job end to end on 100,000 and 10,000 series x 730 days (issue 5).
# SMALL=1 runs tiny sizes (to check the script on a CPU machine).
set -u
OUT=${OUT:-/tmp/replenish-gpu}
mkdir -p "$OUT"
if [ "${SMALL:-0}" = 1 ]; then
    ITEMS=200000; FT_ARGS="--quick --series 200 --days 200 --steps 5"; SCALE=2000; SCALE_DAYS=200
    WORKERS=1
else
    ITEMS=100000000; FT_ARGS="--quick --batch-ours 1024 --predict-scale 1000000"; SCALE=100000
    SCALE_DAYS=730; WORKERS=4   # CPU-side staging in parallel; every worker uses the GPU
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi") \
    | tee "$OUT/gpu.txt"
step() {   # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/summary.txt"
    tail -n 12 "$OUT/$name.log"
    tail -n 1 "$OUT/$name.log" >> "$OUT/results.jsonl"
}
step kernels 150 python3 benchmarks/gpu_check.py --items "$ITEMS"
step forecast 240 python3 benchmarks/forecast_throughput.py $FT_ARGS
step scale 180 python3 benchmarks/scale_plan.py --series "$SCALE" --days "$SCALE_DAYS" --workers "$WORKERS"
echo "== results (last line of each step):"
cat "$OUT/results.jsonl"
