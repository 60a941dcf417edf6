#!/usr/bin/env bash
# The tensor_layout rule against the run that follows it (issue 14 on one GPU): the plain loop of
# benchmarks/foreign/ (torchvision resnet50, bf16 autocast, GPU-resident batches so no data stall
# blurs it) wrapped as a plain script leaves it (NCHW, cudnn.benchmark off), `ddlprof report --json`
# and its tensor_layout prediction; then the same job with channels_last and cudnn.benchmark, wrapped
# and reported. Writes $OUT/layout_{plain,tuned}.json (report --json), logs, and a line comparing the
# predicted step with the measured one.
#   OUT=/tmp/out bash benchmarks/gpu_layout_advice.sh            # BATCH=128 STEPS=120 by default
set -u
OUT=${OUT:-benchmarks/results/gpu}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
source benchmarks/wrap_and_report.sh
run() {  # tag, extra job arguments
  local tag=$1
  shift
  wrap_and_report "layout_$tag" benchmarks/foreign/plain_loop.py --gpu-resident --batch-size ${BATCH:-128} \
    --steps ${STEPS:-120} "$@"
}
run plain --nchw --no-cudnn-benchmark
run tuned
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
plain, tuned = (json.load(open(f"{out}/layout_{t}.json")) for t in ("plain", "tuned"))
rule = [r for r in plain["diagnosis"]["recommendations"] if r["rule"] == "tensor_layout"]
predicted = rule[0]["predicted_step_ms"] if rule else None
print(f"plain step {plain['job']['step_ms']:.1f} ms; tensor_layout predicted {predicted} ms; "
      f"tuned step measured {tuned['job']['step_ms']:.1f} ms")
PY
