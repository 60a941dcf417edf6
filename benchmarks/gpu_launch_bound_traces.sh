#!/usr/bin/env bash
# GPU timelines of launch-bound DDP steps (batch-32 CNNs on 2 x H200, where the single-run
# attribution over-states the interconnect stall) and of one GPU-bound reference, each a normal
# `ddlprof wrap` run of examples/ddp_train.py with a trace window; plus how Kineto marks the steps
# of a trace window on the GPU (benchmarks/kineto_step_markers.py). Everything is packed into one
# archive, $OUT/launch_bound_traces.tgz (few files come back from the device).
#   OUT=benchmarks/results/gpu-2xh200 bash benchmarks/gpu_launch_bound_traces.sh
set -u
OUT=${OUT:-benchmarks/results/gpu}
STAGE=/tmp/launch_bound_traces
rm -rf "$STAGE" && mkdir -p "$STAGE" "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 benchmarks/kineto_step_markers.py --out-dir /tmp/markers > "$STAGE/kineto_step_markers.json" 2> "$STAGE/kineto_step_markers.log"
CONFIGS=${CONFIGS:-"densenet121:32:nvlink mobilenet_v3_large:32:nvlink resnet101:32:nvlink densenet121:32:socket resnet50:64:nvlink"}
for config in $CONFIGS; do
  IFS=: read -r model batch transport <<< "$config"
  case $transport in
    nvlink) env=() ;;
    pcie) env=(NCCL_P2P_DISABLE=1) ;;
    socket) env=(NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 NCCL_SOCKET_IFNAME=lo) ;;
  esac
  name=lb-$model-$batch-$transport
  env "${env[@]}" python3 -m ddlprof wrap --trace-steps 40-42 --out "$STAGE/$name" -- torchrun --standalone \
    --nproc_per_node=2 examples/ddp_train.py --model "$model" --batch-size "$batch" --steps 80 --synthetic \
    > "$STAGE/$name.log" 2>&1
  echo "exit $?" >> "$STAGE/$name.log"
done
tar -czf "$OUT/launch_bound_traces.tgz" -C /tmp launch_bound_traces
