#!/usr/bin/env bash
# The overhead of ddlprof on a small, CPU-launch-bound model (resnet18, 13.8 ms a step on H200),
# with enough pairs to settle it, and with NVML sampling off as a separate variant (NVML's driver
# calls are the suspect if the overhead shows only on launch-bound models). 2 x H200, from the repo
# root, results to $OUT (about 6 minutes):
#   bash benchmarks/gpu_overhead_small.sh
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
timeout 540 python3 benchmarks/overhead.py --models resnet18 --batch-size 64 --steps 80 --run-timeout 60 \
  --repeats 6 --synthetic --variants unwrapped,ddlprof,ddlprof_no_gpu_sampling \
  --out "$OUT/overhead_resnet18.json" > "$OUT/overhead_resnet18.log" 2>&1
echo "exit $?" >> "$OUT/overhead_resnet18.log"
