# Sourced by the benchmarks/gpu_*_advice.sh scripts: wrap_and_report NAME JOB [ARGS...] runs JOB under
# `ddlprof wrap` as a one-GPU torchrun into /tmp/NAME, then reports it: $OUT/NAME.log holds wrap's and
# report's output, $OUT/NAME.json the report's --json.
wrap_and_report() {
  local name=$1
  shift
  python3 -m ddlprof wrap --trace-steps 0 --out "/tmp/$name" -- torchrun --standalone --nproc_per_node=1 "$@" \
    > "$OUT/$name.log" 2>&1
  python3 -m ddlprof report --no-store "/tmp/$name" >> "$OUT/$name.log" 2>&1
  python3 -m ddlprof report --no-store --json "/tmp/$name" > "$OUT/$name.json"
}
