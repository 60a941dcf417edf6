#!/usr/bin/env bash
# Issue 3's validation on one GPU host: one wrapped launch of benchmarks/attribution_inlaunch.py per
# transport (NVLink, peer-to-peer off, sockets), every model x batch looped inside, ground truth and
# attribution from the same launch; then `ddlprof stalls` itself on two configurations, to check that
# the in-launch one-GPU blocks measure what its one_gpu variant measures. Run directories are packed
# into $OUT (flat files only come back from the device).
#   TRANSPORTS=nvlink,pcie OUT=benchmarks/results/gpu-2xh200 bash benchmarks/gpu_attribution.sh
# MODELS, BATCHES (32,64), STEPS (20), REPEATS (2), DEADLINE (240 s a transport), SAMPLE_INTERVAL
# (NVML, 0.5 s) and TAG (a suffix for the file names) change what it runs.
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
MODELS=${MODELS:-resnet50,resnet18,mobilenet_v3_large,densenet121,resnet101,efficientnet_b0,vgg16,bert-base,gpt2,vit_b_16}
NPROC=${NPROC:-2}
for transport in ${TRANSPORTS//,/ }; do
  case $transport in
    nvlink) env=() ;;
    pcie) env=(NCCL_P2P_DISABLE=1) ;;
    socket) env=(NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 NCCL_SOCKET_IFNAME=lo) ;;
  esac
  RUN=/tmp/attr-$transport${TAG:-}
  rm -rf "$RUN"
  env "${env[@]}" python3 -m ddlprof wrap --trace-steps 0 --gpu-sample-interval "${SAMPLE_INTERVAL:-0.5}" --out "$RUN" -- torchrun --standalone \
    --nproc_per_node="$NPROC" benchmarks/attribution_inlaunch.py --models "$MODELS" --batch-sizes "${BATCHES:-32,64}" --steps "${STEPS:-20}" --repeats "${REPEATS:-2}" \
    --transport "$transport" --deadline-s "${DEADLINE:-240}" --phases-out "$RUN/phases.json" \
    > "$OUT/attribution_inlaunch_$transport${TAG:-}.log" 2>&1
  echo "exit $?" >> "$OUT/attribution_inlaunch_$transport${TAG:-}.log"
  tar -czf "$OUT/attribution_inlaunch_$transport${TAG:-}.tgz" -C /tmp "attr-$transport${TAG:-}"
done
if [ -n "${STALLS:-}" ]; then  # e.g. STALLS="resnet50:64 densenet121:32"
  for config in $STALLS; do
    python3 -m ddlprof stalls --steps 20 --warmup 5 --repeats 2 --json --out "/tmp/stalls-${config/:/-}" -- \
      torchrun --standalone --nproc_per_node="$NPROC" examples/ddp_train.py --model "${config%%:*}" \
      --batch-size "${config##*:}" --steps 60 --synthetic > "$OUT/stalls_${config/:/_}.json" 2> "$OUT/stalls_${config/:/_}.log"
    echo "exit $?" >> "$OUT/stalls_${config/:/_}.log"
  done
fi
