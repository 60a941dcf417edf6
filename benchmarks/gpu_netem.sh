#!/usr/bin/env bash
# Issue 18, point 4: the network stall on GPUs over links of known rate. Needs 4 GPUs of one host
# (nvidia-h100-x4 / nvidia-h200-x4; ask `status` first) and root (network namespaces, tc). Not run yet:
# no multi-GPU machine was lent to the session that wrote it. For each model and rate, 2 emulated
# nodes x 2 GPUs talk through NCCL's socket transport over a veth link shaped with tbf
# (`ddlprof stalls --emulate-nodes 2 --emulate-link RATE`); the differential network stall goes
# beside the single-run split of the full variant's report and `ddlprof model predict`'s network term,
# as benchmarks/netem_validation.py does on CPU. Results: $OUT/stalls_<model>_<rate>.json.
#   OUT=/tmp/out bash benchmarks/gpu_netem.sh            # MODELS / RATES override the defaults
set -u
OUT=${OUT:-benchmarks/results/gpu-netem}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 DDLPROF_NO_STORE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 NCCL_IB_DISABLE=1
mkdir -p "$OUT"
nvidia-smi -L > "$OUT/gpus.txt"
for model in ${MODELS:-resnet18 resnet50 bert-base}; do
  for rate in ${RATES:-10gbit 25gbit 100gbit}; do
    timeout 560 python3 -m ddlprof stalls --emulate-nodes 2 --emulate-link "$rate" --steps 20 --warmup 5 \
      --repeats 2 --out "/tmp/netem-$model-$rate" --json -- \
      torchrun --nproc_per_node=4 examples/ddp_train.py --model "$model" --batch-size 32 --synthetic \
      > "$OUT/stalls_${model}_${rate}.json" 2> "$OUT/stalls_${model}_${rate}.log"
    echo "$model $rate exit $?" >> "$OUT/gpus.txt"
  done
done
