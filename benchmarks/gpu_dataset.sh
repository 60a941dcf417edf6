#!/usr/bin/env bash
# The stall dataset on 2 x H200 (issue 4) and the ground truth of the attribution check (issue 3):
# one collect_dataset.py launch per transport of ../shared/TESTBED.md that one 2-GPU host can give
# (NVLink, peer-to-peer off, sockets over loopback), 20 models x batch 32 and 64 looped inside each,
# each launch under a deadline so the whole fits one device call (about 9 minutes). Then a wrapped
# resnet50 run that traces 40 steps, for the analyze-vs-HTA comparison on larger traces.
#   OUT=benchmarks/results/gpu-2xh200 bash benchmarks/gpu_dataset.sh
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
MODELS=resnet18,resnet50,resnet101,vgg16,mobilenet_v3_large,efficientnet_b0,densenet121,vit_b_16,bert-base,gpt2
MODELS=$MODELS,resnet152,vgg11,alexnet,convnext_tiny,swin_t,regnet_y_1_6gf,wide_resnet50_2,squeezenet1_1
MODELS=$MODELS,shufflenet_v2_x1_0,mnasnet1_0
collect() {  # transport deadline_s [env...] [--single-gpu]
  local transport=$1 deadline=$2; shift 2
  env "$@" torchrun --standalone --nproc_per_node=2 benchmarks/collect_dataset.py --transport "$transport" \
    --models "$MODELS" --batch-sizes 32,64 --deadline-s "$deadline" $EXTRA --out "$OUT/dataset.csv" \
    >> "$OUT/dataset.log" 2>&1
  echo "$transport exit $?" >> "$OUT/dataset.log"
}
EXTRA=--single-gpu collect nvlink 180
EXTRA= collect socket 150 NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 NCCL_SOCKET_IFNAME=lo
EXTRA= collect pcie 100 NCCL_P2P_DISABLE=1
python3 -m ddlprof wrap --trace-steps 5-44 --out "$OUT/resnet50-trace40" -- torchrun --standalone \
  --nproc_per_node=2 examples/ddp_train.py --model resnet50 --batch-size 64 --steps 50 --synthetic \
  > "$OUT/resnet50-trace40.log" 2>&1
echo "trace exit $?" >> "$OUT/resnet50-trace40.log"
