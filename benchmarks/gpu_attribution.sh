#!/usr/bin/env bash
# Issue 3's validation runs on 2 x H200: a wrapped resnet50 run that traces 40 steps (for the
# analyze-vs-HTA comparison on larger traces; the traces are copied flat into $OUT), then one wrapped
# launch per model x batch x transport (benchmarks/validate_attribution.py run), model by model, until
# a deadline keeps the whole inside one device call. The ground truth comes from gpu_dataset.sh.
#   OUT=benchmarks/results/gpu-2xh200 bash benchmarks/gpu_attribution.sh
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
RUN=/tmp/resnet50-trace40
python3 -m ddlprof wrap --trace-steps 5-44 --out $RUN -- torchrun --standalone --nproc_per_node=2 \
  examples/ddp_train.py --model resnet50 --batch-size 64 --steps 50 --synthetic > "$OUT/resnet50-trace40.log" 2>&1
echo "trace exit $?" >> "$OUT/resnet50-trace40.log"
for f in $RUN/traces/*/*.json.gz; do cp "$f" "$OUT/trace40-$(basename "$f")"; done
MODELS=resnet50,vgg16,bert-base,resnet18,densenet121,gpt2,mobilenet_v3_large,vit_b_16,resnet101,efficientnet_b0
python3 benchmarks/validate_attribution.py run --models $MODELS --batch-sizes 32,64 \
  --transports nvlink,socket,pcie --steps 25 --warmup 10 --run-timeout 60 --deadline-s "${DEADLINE:-480}" \
  --out "$OUT/attribution_runs.jsonl" > "$OUT/attribution_runs.log" 2>&1
echo "exit $?" >> "$OUT/attribution_runs.log"
