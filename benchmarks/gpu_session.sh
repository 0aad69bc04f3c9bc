#!/usr/bin/env bash
# The prepared GPU run: correctness first, then the GPU figures, in one device call.
#
# Carry only what the GPU image lacks: pytorch-forecasting and Dask, as wheels. Once, here:
#   bash ../shared/device/wheels.sh          # fills .whl (about 6 MB; no numba/llvmlite/cupy/torch)
# Then one device call, from the repository root, with .whl in carry:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
#   bash benchmarks/gpu_session.sh           # logs, JSON lines and a summary under $OUT
#
# Steps, in order, each under its own limit and all inside BUDGET seconds (default 540: one
# 10-minute call with a minute to spare); a step that no longer fits is skipped and says so:
#   1. tests    pytest -m gpu tests/*/test_*_gpu.py: the GPU tests on CUDA       (limit  90 s)
#   2. check    benchmarks/gpu_check.py: CuPy vs NumPy on fresh inputs (seed printed), every
#               kernel in float32 and float64, random lead times, cost target, allocation,
#               echelon; CUDA vs CPU forecasts of the same weights; precision; the device-
#               resident shard pipeline; then the fused kernel's bandwidth vs a device copy on
#               100M items and plan_orders timings                                (limit 170 s)
#   3. forecast benchmarks/forecast_throughput.py: pytorch-forecasting's pipeline vs ours on
#               the same GPU (training samples/s, prediction series/s), then 1M series
#               predicted                                                         (limit 200 s)
#   4. scale    benchmarks/scale_plan.py: the plan job through the embedded GPU cluster,
#               SCALE series x 730 days (default 100,000; SCALE=1000000 BUDGET=560 STEPS=scale
#               runs the 1M x 730 plan alone in a second call)                    (the rest)
# STEPS="check forecast" picks steps; SEED=n reruns the same random inputs; SMALL=1 runs tiny
# sizes on any machine (a CPU machine checks the script itself: host vs host comparisons).
# Exit status: 0 when every step that ran passed, else 1. The last line is one JSON object.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/replenish-gpu}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-540}
STEPS=${STEPS:-tests check forecast scale}
SEED=${SEED:-$($PY -c 'import secrets; print(secrets.randbits(31))')}
SCALE=${SCALE:-100000}
export PYTHONUNBUFFERED=1
echo "seed: $SEED (SEED=$SEED reruns the same inputs)"
FACTOR=${LIMIT_FACTOR:-1}   # step limits x FACTOR (SMALL=1: 3, for a slow shared CPU)
if [ "${SMALL:-0}" = 1 ]; then
    FACTOR=${LIMIT_FACTOR:-3}
    CHECK_ARGS="--small"; FT_ARGS="--quick --series 200 --days 200 --steps 5 --predict-scale 2000"
    SCALE=2000; SCALE_DAYS=200; SCALE_ARGS="--workers 2 --skip-peer --train-steps 5"
else
    CHECK_ARGS=""; FT_ARGS="--series 5000 --days 365 --steps 60 --batch-ours 1024 --predict-scale 1000000"
    SCALE_DAYS=730; SCALE_ARGS=""
fi
: > "$OUT/results.jsonl"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi") \
    | tee "$OUT/gpu.txt"
T0=$SECONDS
step() {   # step NAME LIMIT COMMAND...
    local name=$1 limit=$2; shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    local left=$((BUDGET - (SECONDS - T0)))
    if [ "$limit" = rest ]; then limit=$left; else limit=$((limit * FACTOR)); fi
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 20 ]; then
        echo "== $name: skipped (${left} s of the budget left)"
        echo "{\"step\": \"$name\", \"rc\": null, \"skipped\": \"budget\"}" >> "$OUT/results.jsonl"
        return 0
    fi
    local t=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t)) s (limit $limit s)"
    tail -n 15 "$OUT/$name.log" | cut -c1-400
    $PY - "$name" "$rc" "$((SECONDS - t))" "$OUT/$name.log" >> "$OUT/results.jsonl" <<'EOF'
import json, sys
name, rc, secs, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
last = None
for line in reversed(open(log, errors="replace").read().splitlines()):
    line = line.strip()
    if line.startswith("{"):
        try:
            last = json.loads(line)
            break
        except ValueError:
            pass
print(json.dumps({"step": name, "rc": rc, "seconds": secs, "timed_out": rc in (124, 137),
                  "result": last}))
EOF
}
# the GPU-marked test modules only (the others import CPU peers, e.g. stockpyl, that the image lacks)
step tests 90 $PY -m pytest -q -m gpu -p no:cacheprovider tests/*/test_*_gpu.py
step check 170 $PY benchmarks/gpu_check.py --seed "$SEED" $CHECK_ARGS
step forecast 200 $PY benchmarks/forecast_throughput.py $FT_ARGS
step scale rest $PY benchmarks/scale_plan.py --series "$SCALE" --days "$SCALE_DAYS" --single $SCALE_ARGS
$PY - "$OUT/results.jsonl" "$SEED" "$((SECONDS - T0))" <<'EOF' | tee "$OUT/summary.json"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
failed = [r["step"] for r in rows if r.get("rc") not in (0, None)]
print(json.dumps({"session": "gpu_session", "seed": int(sys.argv[2]), "seconds": int(sys.argv[3]),
                  "status": "failed" if failed else "ok", "failed_steps": failed,
                  "steps": {r["step"]: r for r in rows}}))
EOF
$PY -c "import json,sys; sys.exit(0 if json.load(open('$OUT/summary.json'))['status'] == 'ok' else 1)"
