#!/usr/bin/env bash
# Issue 19 on one GPU (H100 or H200: the share.json of each run names it): `ddlprof share -n 1,2,4` in
# time-slicing and MPS for a small CNN, a mid-size CNN and a transformer (examples/ddp_train.py,
# synthetic batches of 32 on the device, so the input pipeline plays no part), and one plain wrapped run
# whose `ddlprof report` must show energy per step and per sample. Run on 1 x H100 (BENCHMARKS.md,
# issue 19). Each model is one call of a few minutes; from the repo root, results to $OUT:
#   OUT=benchmarks/results/gpu-share bash benchmarks/gpu_share.sh small_cnn
#   OUT=benchmarks/results/gpu-share bash benchmarks/gpu_share.sh resnet50
#   OUT=benchmarks/results/gpu-share bash benchmarks/gpu_share.sh bert-base     # needs transformers
#   OUT=benchmarks/results/gpu-share bash benchmarks/gpu_share.sh report        # energy in report
#   python3 benchmarks/share_table.py benchmarks/results/gpu-share/share_*.json   # BENCHMARKS.md's table
# MPS runs only where nvidia-cuda-mps-control is installed; otherwise share.json says why it did not.
set -u
OUT=${OUT:-benchmarks/results/gpu-share}
STAGE=/tmp/gpu_share
mkdir -p "$OUT" "$STAGE"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 DDLPROF_HOME=$STAGE/home
what=${1:?usage: gpu_share.sh small_cnn|resnet50|bert-base|report}
nvidia-smi --query-gpu=name,memory.total,power.limit,compute_mode,mig.mode.current --format=csv > "$OUT/gpu_$what.txt" 2>&1
case "$what" in
  small_cnn) steps=3000; warmup=300 ;;   # ~2 ms steps: enough of them for the copies to overlap for seconds (NVML energy)
  resnet50) steps=120; warmup=20 ;;
  bert-base) steps=100; warmup=20 ;;
  report)
    rm -rf "$STAGE/report"
    python3 -m ddlprof wrap --trace-steps 0 --gpu-sample-interval 0.1 --out "$STAGE/report" -- \
      python3 examples/ddp_train.py --model resnet50 --batch-size 32 --steps 200 --synthetic \
      > "$OUT/report_energy.log" 2>&1
    python3 -m ddlprof report --no-store "$STAGE/report" >> "$OUT/report_energy.log" 2>&1
    python3 -m ddlprof report --no-store --json "$STAGE/report" > "$OUT/report_energy.json"
    echo "exit $?" >> "$OUT/report_energy.log"
    exit 0 ;;
  *) echo "unknown: $what" >&2; exit 2 ;;
esac
modes=timeslice
command -v nvidia-cuda-mps-control > /dev/null && modes=timeslice,mps
rm -rf "$STAGE/$what"
timeout 570 python3 -m ddlprof share -n 1,2,4 --mode "$modes" --steps "$steps" --warmup "$warmup" \
  --timeout 240 --model "$what" --out "$STAGE/$what" -- \
  python3 examples/ddp_train.py --model "$what" --batch-size 32 --steps 100000 --synthetic \
  > "$OUT/share_$what.log" 2>&1
echo "exit $?" >> "$OUT/share_$what.log"
cp "$STAGE/$what/share.json" "$OUT/share_$what.json" 2>> "$OUT/share_$what.log"
