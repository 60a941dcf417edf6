#!/usr/bin/env bash
# Where a foreign job's training process spends its host time, unwrapped and under `ddlprof wrap`
# (issue 12, point 1: "sample the training thread's host time with and without ddlprof"). py-spy
# attaches to the training process in its steady state (after DELAY s, past start-up and the trace
# window) for DURATION s, without pausing it (--nonblocking), and records every thread's on-CPU
# samples (IDLE=1: waiting threads' samples too, so that the shares are of wall time and show where
# a hook waits off the CPU; NATIVE=1: with their C/C++ frames, which say what it waits for);
# benchmarks/pyspy_share.py then counts, per thread, the samples and those
# with a ddlprof frame, and names ddlprof's costliest functions. The job runs on cores JOB_CPUS
# (0-7), wrap's own process and py-spy on OTHER_CPUS (8-15). Each launch's own step timer is kept
# beside its samples.
#
#   OUT=$OUT bash benchmarks/gpu_pyspy_overhead.sh plain 2     # job (plain, hf, lightning), rounds
#   IDLE=1 NATIVE=1 JOB_ARGS=--gpu-resident OUT=$OUT bash benchmarks/gpu_pyspy_overhead.sh plain 1
#   JOB_ARGS=--tiny JOB_CPUS=0 OTHER_CPUS=1 OUT=/tmp/o bash benchmarks/gpu_pyspy_overhead.sh hf 1  # CPU
#
# Needs the py-spy wheel in .whl/ (python3 -m pip download --no-deps --only-binary=:all: -d .whl py-spy).
set -euo pipefail
JOB=${1:-plain}
ROUNDS=${2:-2}
STEPS=${STEPS:-800}
DELAY=${DELAY:-35}
DURATION=${DURATION:-10}
JOB_CPUS=${JOB_CPUS:-0-7}
OTHER_CPUS=${OTHER_CPUS:-8-15}
JOB_ARGS=${JOB_ARGS:-}  # more arguments for the job (hf_trainer.py --tiny on a CPU)
VARIANTS=${VARIANTS:-unwrapped wrapped}  # or one of them
IDLE=${IDLE:-0}  # 1: py-spy --idle (waiting threads sampled too)
NATIVE=${NATIVE:-0}  # 1: py-spy --native (C/C++ frames too: a wait in take_gil or in libcuda);
# native stacks need the process paused at each sample, so its step times are not to be compared
SPY_MORE=(--nonblocking)
[ "$IDLE" = 1 ] && SPY_MORE+=(--idle)
[ "$NATIVE" = 1 ] && SPY_MORE=(--native "${SPY_MORE[@]:1}")
: "${OUT:?set OUT to the results folder}"
case $JOB in
  plain) SCRIPT=plain_loop.py ;;
  hf) SCRIPT=hf_trainer.py ;;
  lightning) SCRIPT=lightning_job.py ;;
  *) echo "unknown job $JOB (plain, hf, lightning)" >&2; exit 2 ;;
esac
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/pyspy .whl/py_spy-*.whl
SPY=/tmp/pyspy/bin/py-spy
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
for round in $(seq 1 "$ROUNDS"); do
  for variant in $VARIANTS; do
    tag=${JOB}_${variant}_$round
    job=(taskset -c "$JOB_CPUS" torchrun --standalone --nproc_per_node=1 "benchmarks/foreign/$SCRIPT" --steps "$STEPS" $JOB_ARGS)
    if [ "$variant" = wrapped ]; then
      job=(taskset -c "$OTHER_CPUS" python3 -m ddlprof wrap --out "$OUT/run_$tag" -- "${job[@]}")
    fi
    STEPTIMER_OUT=$OUT/steps_$tag.json "${job[@]}" > "$OUT/log_$tag.txt" 2>&1 &
    launched=$!
    sleep "$DELAY"
    agent=$(pgrep -o -f "^[^ ]*python[^ ]* [^ ]*torchrun --standalone" || true)
    trainer=$(pgrep -o -P "${agent:-0}" || true)
    if [ -n "$trainer" ]; then
      taskset -c "$OTHER_CPUS" "$SPY" record --threads "${SPY_MORE[@]}" --rate 250 \
        --duration "$DURATION" \
        --format raw -o "$OUT/pyspy_$tag.txt" --pid "$trainer" > "$OUT/pyspy_$tag.log" 2>&1 || true
    else
      echo "$tag: no training process found after $DELAY s" | tee -a "$OUT/pyspy_missing.txt"
    fi
    wait "$launched" || echo "$tag: the job exited $?" | tee -a "$OUT/pyspy_missing.txt"
  done
done
python3 benchmarks/pyspy_share.py "$OUT"/pyspy_"$JOB"_*.txt --rate 250 --duration "$DURATION" \
  --out "$OUT/pyspy_share_$JOB.json"
