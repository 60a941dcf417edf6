#!/usr/bin/env bash
# Collector ablation on 2 x H200 (run from the repo root on the device); it found that the comm
# timing of the first version cost ~1.7 ms per resnet50 step. Output: benchmarks/results/gpu-2xh200/collector_ablation_before_fix.log
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
J="--standalone --nproc_per_node=2 examples/ddp_train.py --model resnet50 --batch-size 64 --steps 100 --synthetic"
med() { python3 -c "import json,statistics,sys; print(sys.argv[2], round(statistics.median(json.load(open(sys.argv[1]))[20:]),3))" $1 "$2"; }
for r in 1 2; do
 torchrun $J --step-times /tmp/a.json >/dev/null 2>&1; med /tmp/a.json unwrapped
 torchrun $J --python-comm-hook --step-times /tmp/c.json >/dev/null 2>&1; med /tmp/c.json python_hook_only
 python3 -m ddlprof wrap --out /tmp/b$r -- torchrun $J --step-times /tmp/b.json >/dev/null 2>&1; med /tmp/b.json ddlprof
 python3 -m ddlprof wrap --disable comm --out /tmp/d$r -- torchrun $J --step-times /tmp/d.json >/dev/null 2>&1; med /tmp/d.json ddlprof_no_comm
 python3 -m ddlprof wrap --no-gpu-sampling --disable comm --disable data --out /tmp/e$r -- torchrun $J --step-times /tmp/e.json >/dev/null 2>&1; med /tmp/e.json ddlprof_steps_only_nosampler
 python3 -m ddlprof wrap --no-gpu-sampling --trace-steps 0 --disable comm --disable data --disable steps --out /tmp/f$r -- torchrun $J --step-times /tmp/f.json >/dev/null 2>&1; med /tmp/f.json ddlprof_all_off
done
