#!/usr/bin/env bash
# The 40-step resnet50 GPU traces of the analyze-vs-HTA comparison (BENCHMARKS.md): one wrapped
# 2-GPU run that traces steps 5-44; the traces are copied flat into $OUT (deeper files do not come
# back from the device).
#   OUT=benchmarks/results/gpu-2xh200 bash benchmarks/gpu_trace40.sh
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
RUN=/tmp/resnet50-trace40
python3 -m ddlprof wrap --trace-steps 5-44 --out $RUN -- torchrun --standalone --nproc_per_node=2 \
  examples/ddp_train.py --model resnet50 --batch-size 64 --steps 50 --synthetic > "$OUT/resnet50-trace40.log" 2>&1
echo "trace exit $?" >> "$OUT/resnet50-trace40.log"
for f in $RUN/traces/*/*.json.gz; do cp "$f" "$OUT/trace40-$(basename "$f")"; done
