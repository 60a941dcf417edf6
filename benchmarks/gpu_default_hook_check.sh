#!/usr/bin/env bash
# DDP's built-in C++ all-reduce (no hook: ddlprof registers none of its own) and a user's Python hook on
# 2 GPUs (or 1: set NPROC=1): both must time every untraced step (no unresolved comm, no collector warning). Writes $OUT/check.txt.
#   OUT=/tmp/out bash benchmarks/gpu_default_hook_check.sh
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
for hook in default python; do
  extra=""
  [ $hook = python ] && extra=--python-comm-hook
  python3 -m ddlprof wrap --out /tmp/r-$hook --trace-steps 30-31 -- torchrun --standalone --nproc_per_node=${NPROC:-2} \
    examples/ddp_train.py --model resnet50 --batch-size 64 --steps 80 --synthetic $extra > "$OUT/wrap_$hook.log" 2>&1
  echo "exit $?" >> "$OUT/wrap_$hook.log"
  python3 -m ddlprof report --no-store --json /tmp/r-$hook > "$OUT/report_$hook.json" 2>> "$OUT/wrap_$hook.log"
  python3 -c "
import json, statistics as st
rs = [json.loads(l) for l in open('/tmp/r-$hook/ranks/rank-0.jsonl')]
s = [r for r in rs if r.get('type') == 'step' and r['step'] > 5 and not r.get('traced')]
print('$hook', 'steps', len(s), 'unresolved', sum(1 for r in s if (r.get('comm') or {}).get('unresolved')),
      'exposed median', round(st.median(r['comm']['exposed_ms'] for r in s if 'exposed_ms' in r['comm']), 3),
      'step median', round(st.median(r['step_ms'] for r in s), 2),
      'warnings', [r for r in rs if r.get('type') == 'warning'])
" >> "$OUT/check.txt" 2>&1
done
cat "$OUT/check.txt"
