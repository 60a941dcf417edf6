#!/usr/bin/env bash
# The GPU validation of `ddlprof wrap` + `ddlprof report` and the overhead benchmark on 2 x H200
# (device kind nvidia-h200-x2). Run from the repository root; results go to $OUT:
#   bash benchmarks/gpu_resnet50.sh            # both parts (about 6 minutes)
#   bash benchmarks/gpu_resnet50.sh wrap       # only the wrapped resnet50 runs and their reports
#   bash benchmarks/gpu_resnet50.sh overhead   # only the overhead benchmark
# Every step has its own time limit so that one failure still leaves the others' results.
set -u
PART=${1:-all}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT" runs
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv
  nvidia-smi topo -m
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'nccl', torch.cuda.nccl.version(), 'torchvision', torchvision.__version__)"
} > "$OUT/machine.txt" 2>&1

if [ "$PART" = all ] || [ "$PART" = wrap ]; then
  JOB="examples/ddp_train.py --model resnet50 --batch-size 64 --steps 60 --workers 8"
  # 1. resnet50, 2 GPUs over NVLink (NCCL default)
  timeout 100 python3 -m ddlprof wrap --out runs/resnet50-nvlink -- torchrun --nproc_per_node=2 $JOB \
    > "$OUT/resnet50-nvlink.wrap.log" 2>&1
  echo "exit $?" >> "$OUT/resnet50-nvlink.wrap.log"
  # 2. the same job with NCCL forced onto sockets over loopback (TESTBED.md: ~25 Gbit/s network)
  NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 NCCL_SOCKET_IFNAME=lo \
    timeout 100 python3 -m ddlprof wrap --out runs/resnet50-socket -- torchrun --nproc_per_node=2 $JOB \
    > "$OUT/resnet50-socket.wrap.log" 2>&1
  echo "exit $?" >> "$OUT/resnet50-socket.wrap.log"
  for run in resnet50-nvlink resnet50-socket; do
    python3 -m ddlprof report "runs/$run" > "$OUT/$run.report.txt" 2>&1
  done
  tar czf "$OUT/runs.tgz" runs
fi
if [ "$PART" = all ] || [ "$PART" = overhead ]; then
  # 3. overhead: paired, interleaved runs, unwrapped vs ddlprof vs continuous torch.profiler
  timeout 330 python3 benchmarks/overhead.py --models resnet50,resnet18 --batch-size 64 --steps 80 --run-timeout 90 \
    --repeats 3 --synthetic --out "$OUT/overhead.json" > "$OUT/overhead.log" 2>&1
  echo "exit $?" >> "$OUT/overhead.log"
fi
