"""``ddlprof stalls --data``: what the input pipeline costs the step in all, by two variants of the job
as launched on this host, with no change to its code:

    launched   the job as it is
    replayed   the same, with each DataLoader's first batches replayed from memory: no fetch, no
               preparation, the loop's ceiling (``collectors/replay.py``)

    input pipeline = t(launched) - t(replayed)

DS-Analyzer's differential method (the real pipeline against data already in memory) without editing
the job. Beside it goes the single-run split of the launched runs' data stall (fetch / prep / other, as
``ddlprof report`` makes it), which says where in the pipeline the time goes. The replayed runs measure
only the steps after the kept batches (``REPLAY_BATCHES`` more warm-up steps, each taking a batch at
least) and say how many of those steps' batches came from memory: where none did (the job's input does
not come through a torch DataLoader) there is no figure, only the reason.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ddlprof.collectors.config import REPLAY
from ddlprof.collectors.replay import MAX_BYTES
from ddlprof.errors import DdlprofError
from ddlprof.profiler.differential import (
    SCHEMA,
    SCHEMA_VERSION,
    Job,
    Measured,
    Variant,
    common_env,
    difference,
    local_launch,
    parse_job,
    run_variants,
    terminate_as_interrupt,
    variant_rows,
)
from ddlprof.runs.breakdown import DATA_PARTS
from ddlprof.runs.rundir import Run, check_out_folder, json_text, write_atomic

REPLAY_BATCHES = 8  # kept per DataLoader and cycled: enough to vary the batches, little memory
NO_LOADER = (
    "no batch of the replayed runs' measured steps came from memory: the job's input does not come "
    "through a torch DataLoader (or its DataLoaders make fewer batches than the warm-up)"
)
IN_NOISE = (
    "a run's difference was {low:.2f} ms: the input pipeline's cost is within the run-to-run noise of "
    "the step (more --repeats and --steps narrow it)"
)
PART_REPLAYED = (
    "only {pct:.0f}% of the replayed runs' measured batches came from memory (a DataLoader made anew "
    "fetches its first batches again): the figure is a lower bound"
)


def plan(job: Job, emulate_pcie: bool) -> list[Variant]:
    common = common_env(emulate_pcie)
    replayed = {**common, REPLAY: str(REPLAY_BATCHES)}
    return [
        Variant("launched", job.nproc, [local_launch(job, job.nproc, common)]),
        Variant("replayed", job.nproc, [local_launch(job, job.nproc, replayed)], REPLAY_BATCHES),
    ]


def replayed_share(run: Run, warmup: int) -> float | None:
    """The share of the DataLoader batches of the steps after ``warmup`` that came from memory (None:
    those steps took no DataLoader batch)."""
    batches = replayed = 0.0
    for rank in run.ranks:
        for step in rank.steps:
            loader = step.get("loader")
            if step["step"] > warmup and isinstance(loader, dict):
                batches += loader.get("batches", 0)
                replayed += loader.get("replayed", 0)
    return replayed / batches if batches else None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known and len(known) == len(values) else None


def data_result(measured: Measured, warmup: int) -> dict[str, Any]:
    """The arithmetic of the two variants, and the launched runs' own split of their data stall (means
    over the runs, so that the parts still add up to the stall)."""
    times = measured.times()
    cost = difference(times, "launched", "replayed", "launched")
    shares = [replayed_share(run, warmup + REPLAY_BATCHES) for run, _ in measured.runs.get("replayed", [])]
    share = None if None in shares or not shares else min(s for s in shares if s is not None)
    reasons = {}
    if cost is None:
        reasons["input_pipeline"] = "a variant it needs failed: " + "; ".join(measured.failures.values())
    elif not share:
        cost, reasons["input_pipeline"] = None, NO_LOADER
    elif share < 1.0:
        reasons["input_pipeline"] = PART_REPLAYED.format(pct=100 * share)
    elif cost["spread_ms"][0] <= 0:
        reasons["input_pipeline"] = IN_NOISE.format(low=cost["spread_ms"][0])
    launched, replayed = measured.jobs("launched"), measured.jobs("replayed")
    split = {key: _mean([j.get(key) for j in launched]) for key in ("data_stall_ms", *DATA_PARTS)}
    if launched and split["data_fetch_ms"] is None:
        reasons["split"] = "the launched runs' batches have no cost (see ddlprof report of a run)"
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "mode": "data",
        "variants": variant_rows(times, measured.failures, ["launched", "replayed"]),
        "input_pipeline": cost,
        "single_run": split if launched else None,
        "replayed_data_stall_ms": _mean([j.get("data_stall_ms") for j in replayed]) if replayed else None,
        "replay": {"batches_kept": REPLAY_BATCHES, "max_bytes": MAX_BYTES, "replayed_share": share},
        "reasons": reasons,
    }


def run_data_stalls(
    command: list[str],
    steps: int,
    repeats: int,
    warmup: int,
    emulate_pcie: bool,
    out: Path,
    timeout_s: float,
) -> dict[str, Any]:
    """Run both variants ``repeats`` times, interleaved, and return (and write) ``stalls.json``."""
    check_out_folder(out)
    launched = parse_job(command)
    if launched.nnodes > 1:
        raise DdlprofError("stalls --data: runs the job on this host; give it one node's share (--nnodes=1)")
    with terminate_as_interrupt():
        measured = run_variants(lambda: plan(launched, emulate_pcie), steps, repeats, warmup, out, timeout_s)
    result = data_result(measured, warmup)
    result.update(
        {
            "command": command,
            "steps": steps,
            "warmup": warmup,
            "repeats": repeats,
            "emulate_pcie": emulate_pcie,
            "out": str(out),
        }
    )
    write_atomic(out / "stalls.json", json_text(result))
    return result
