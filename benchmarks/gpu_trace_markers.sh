#!/usr/bin/env bash
# Kineto's step markers in `ddlprof wrap`'s GPU traces: a 2-GPU resnet50 job with a trace window at
# steps 20-22, fed by a DataLoader and with synthetic batches (no DataLoader), then each trace's
# CPU and GPU ProfilerStep#N spans (benchmarks/kineto_step_markers.py --check). Every step of the
# window should have one GPU span of about a step, not the first one spanning the window.
#   OUT=benchmarks/results/gpu-2xh200 bash benchmarks/gpu_trace_markers.sh
set -u
OUT=${OUT:-benchmarks/results/gpu}
STAGE=/tmp/trace_markers
rm -rf "$STAGE" && mkdir -p "$STAGE" "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
for feed in dataloader synthetic; do
  extra=()
  [ "$feed" = synthetic ] && extra=(--synthetic)
  python3 -m ddlprof wrap --trace-steps 20-22 --out "$STAGE/$feed" -- torchrun --standalone --nproc_per_node=2 \
    examples/ddp_train.py --model resnet50 --batch-size 32 --steps 40 "${extra[@]}" > "$STAGE/$feed.log" 2>&1
  echo "exit $?" >> "$STAGE/$feed.log"
done
python3 benchmarks/kineto_step_markers.py --check "$STAGE"/*/traces/*/*.pt.trace.json.gz > "$OUT/trace_markers.json"
tar -czf "$OUT/trace_markers.tgz" -C /tmp trace_markers
