#!/usr/bin/env bash
# Issue 20 on one GPU: a real JPEG pipeline (benchmarks/jpeg_pipeline.py: ImageFolder, PIL decode,
# RandomResizedCrop, flip, ToTensor, Normalize in DataLoader workers, resnet50 b64 under DDP) wrapped with
# 2 workers; `ddlprof report` gives the data-stall split and its num_workers advice; the job is then run
# again with the advised num_workers and reported. Writes $OUT/jpeg_w*.json (report --json) and logs.
#   OUT=/tmp/out bash benchmarks/gpu_jpeg_advice.sh
set -u
OUT=${OUT:-benchmarks/results/gpu}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nproc > "$OUT/jpeg_machine.txt"; nvidia-smi -L >> "$OUT/jpeg_machine.txt"
python3 benchmarks/jpeg_pipeline.py --make /tmp/jpegs --images ${IMAGES:-3000} >> "$OUT/jpeg_machine.txt" 2>&1
source benchmarks/wrap_and_report.sh
run() {  # workers, tag
  wrap_and_report "jpeg_$2" benchmarks/jpeg_pipeline.py --data /tmp/jpegs --workers "$1" --steps ${STEPS:-80}
}
run 2 w2
advised=$(python3 -c "
import json
rec = [r for r in (json.load(open('$OUT/jpeg_w2.json')).get('diagnosis') or {}).get('recommendations', []) if 'num_workers' in (r.get('change') or {})]
print(rec[0]['change']['num_workers'] if rec else '')")
echo "advised num_workers: ${advised:-none}" >> "$OUT/jpeg_machine.txt"
[ -n "$advised" ] && run "$advised" advised
tail -3 "$OUT/jpeg_machine.txt"; grep -h -i -E "data|verdict|num_workers|step" "$OUT"/jpeg_w2.log "$OUT"/jpeg_advised.log 2>/dev/null | head -40
