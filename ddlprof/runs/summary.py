"""Merge the ranks of one or more run directories into the steady-state summary.

Warm-up steps are dropped, and so are steps inside a trace window (the profiler slows them) and the
step that exported the trace. Every category is a mean over the remaining steps, so the categories
of a rank, and of the job, still add up to its step time. The summary is what ``summary.json``
holds (schema: ``summary.schema.json`` beside this file).
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ddlprof
from ddlprof.errors import DdlprofError
from ddlprof.runs import peer_wait
from ddlprof.runs.breakdown import (
    ABSENT_RANK_WAIT,
    CATEGORIES,
    DATA_PARTS,
    MULTI_HOST_WAIT,
    NO_PEER_WAIT,
    WIRE,
    busy_ms,
    reasons,
    step_categories,
)
from ddlprof.runs.diagnosis import diagnose
from ddlprof.runs.energy import energy
from ddlprof.runs.gpu_counters import load_samples, steady_counters
from ddlprof.runs.intervals import runs_of
from ddlprof.runs.rundir import RankLog, Run, json_text, source_files, write_atomic

SCHEMA = "ddlprof.summary"
SCHEMA_VERSION = 1
STRAGGLER_RATIO = 1.10  # busy time 10% above the median rank ...
STRAGGLER_MIN_MS = 1.0  # ... and at least this much, so that noise never names a straggler


def auto_warmup(steps: int) -> int:
    return max(1, min(10, steps // 5))


def _merge_ranks(runs: list[Run]) -> dict[int, RankLog]:
    merged: dict[int, RankLog] = {}
    for run in runs:
        for log in run.ranks:
            if log.rank in merged:
                raise DdlprofError(
                    f"rank {log.rank} appears twice ({merged[log.rank].path} and {log.path}): "
                    "these directories are not the nodes of one job"
                )
            merged[log.rank] = log
    return merged


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return sum(v if v is not None else 0.0 for v in values) / len(values)


def _rank_summary(log: RankLog, steps: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "rank": log.rank,
        "host": log.meta.get("host"),
        "device": log.meta.get("device_name") or log.meta.get("device"),
        "steps": len(steps),
    }
    for key in ("step_ms", *CATEGORIES, *DATA_PARTS):
        row[key] = _mean([s[key] for s in steps])
    # the exposed communication less the wait, where the wait is known: what the stalls above hold
    row["wire_ms"] = None if row["wait_for_peers_ms"] is None else sum(row[k] or 0.0 for k in WIRE)
    samples = [s["samples"] for s in steps]
    seconds = sum(s["step_ms"] for s in steps) / 1e3
    row["throughput_samples_per_s"] = (
        sum(samples) / seconds if steps and seconds > 0 and all(samples) else None
    )
    return row


def _loader(log: RankLog, steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What a batch cost its producer on this rank (medians over the steady steps), the DataLoader
    workers making them and the CPU cores the rank may use: the inputs of the data advice."""
    loaders = [s.get("loader") for s in steps]
    costed = [c for c in loaders if isinstance(c, dict) and c.get("batches") and not c.get("uncosted")]
    if not costed:
        return None

    def per_batch(key: str) -> float:
        return round(statistics.median(c[key] / c["batches"] for c in costed), 3)

    return {
        "workers": int(max(c.get("workers", 0) for c in costed)),
        "batch_ms": per_batch("wall_ms"),
        "batch_cpu_ms": per_batch("cpu_ms"),
        "batch_cpu_wait_ms": per_batch("cpu_wait_ms"),
        "batches_per_step": round(statistics.median(c["batches"] for c in costed), 3),
        "cpus": log.meta.get("cpus"),
        "ranks_on_host": log.meta.get("local_world_size"),
    }


def slower_than_median(busy: dict[int, float]) -> list[dict[str, Any]]:
    """Ranks whose busy time (outside communication) is well above the median rank's.

    A straggler makes the others wait in communication, so only its busy time stands out. Shared by
    ``ddlprof report`` and ``ddlprof analyze``.
    """
    if len(busy) < 2:
        return []
    median = statistics.median(busy.values())
    return [
        {
            "rank": rank,
            "busy_ms": round(value, 3),
            "median_busy_ms": round(median, 3),
            "excess_pct": round(100 * (value - median) / median, 1) if median else None,
        }
        for rank, value in busy.items()
        if value > STRAGGLER_RATIO * median and value - median >= STRAGGLER_MIN_MS
    ]


def with_causes(found: list[dict[str, Any]], parts: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    """``found`` stragglers, each with its ``cause``: the part of its busy time (``parts``, per rank:
    ``compute_ms``, ``data_stall_ms`` and ``other_ms``) furthest above the median rank's. Shared by
    ``ddlprof report`` and ``ddlprof analyze``."""
    for straggler in found:
        mine = parts[straggler["rank"]]
        excess = {k: v - statistics.median(p[k] for p in parts.values()) for k, v in mine.items()}
        straggler["cause"] = max(excess, key=lambda k: excess[k])
    return found


def _stragglers(ranks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stragglers of a report, each with the category that makes it slow."""
    parts = {r["rank"]: {k: r[k] or 0.0 for k in ("compute_ms", "data_stall_ms", "other_ms")} for r in ranks}
    return with_causes(slower_than_median({r["rank"]: busy_ms(r) for r in ranks}), parts)


def _split_waits(
    steps_by_rank: dict[int, list[dict[str, Any]]], world_size: int, one_host: bool
) -> peer_wait.Split:
    """Each rank's wait for the last rank per step (ranks of one host only: see ``peer_wait.py``)."""
    return (
        peer_wait.split(peer_wait.host_arrivals(steps_by_rank), world_size) if one_host else peer_wait.Split()
    )


def summarize(runs: list[Run], warmup: int | None = None) -> dict[str, Any]:
    logs = _merge_ranks(runs)
    paths = ", ".join(str(r.path) for r in runs)
    stepped = {rank: log for rank, log in logs.items() if log.steps}
    if not stepped:
        broken = [log.problem for log in logs.values() if log.problem]
        if broken:
            raise DdlprofError(f"{paths}: no readable rank file with a step ({'; '.join(broken[:3])})")
        raise DdlprofError(
            f"{paths}: no rank recorded a step (the job stopped before its first optimizer step, "
            "or ran without importing torch)"
        )
    world_size, hosts = _world_and_hosts(logs)
    multi_node = _is_multi_node(runs, logs)

    fewest = min(len(log.steps) for log in stepped.values())
    warmup_auto = warmup is None
    warmup = auto_warmup(fewest) if warmup is None else warmup
    rank_rows, excluded_traced, steady_counts, window = [], set(), [], [float("inf"), float("-inf")]
    lags: list[float] = []
    costs = []
    chosen_by_rank: dict[int, list[dict[str, Any]]] = {}
    for rank in sorted(stepped):
        log = stepped[rank]
        after_warmup = [s for s in log.steps if s["step"] > warmup]
        steady = [s for s in after_warmup if not s.get("traced")]
        excluded_traced.update(s["step"] for s in after_warmup if s.get("traced"))
        if not steady and not warmup_auto:
            last = max(s["step"] for s in log.steps)
            raise DdlprofError(
                f"--warmup {warmup}: no steady step left on rank {rank} (its steps run to {last}, "
                "traced steps excluded); pass a smaller --warmup"
            )
        chosen_by_rank[rank] = steady or after_warmup or log.steps  # a very short run: use what there is
    waits = _split_waits(chosen_by_rank, world_size, len(hosts) == 1)
    for rank, chosen in chosen_by_rank.items():
        log = stepped[rank]
        steady_counts.append(len(chosen))
        first, last = chosen[0].get("start"), chosen[-1].get("end")  # either may be null
        window = [
            window[0] if first is None else min(window[0], first),
            window[1] if last is None else max(window[1], last),
        ]
        rows = [
            {
                **step_categories(s, multi_node, log.probe, waits.waits.get((rank, s["step"]))),
                "samples": s.get("samples"),
            }
            for s in chosen
        ]
        lags += [lag for s in chosen if (lag := (s.get("comm") or {}).get("gpu_lag_ms")) is not None]
        rank_rows.append(
            {
                **_rank_summary(log, rows),
                "loader": _loader(log, chosen),
                "caused_wait_ms": waits.caused.get(rank, 0.0) if waits.waits else None,
            }
        )
        costs.append(_own_cost(log, chosen, rank_rows[-1]["step_ms"]))

    job: dict[str, Any] = {
        key: _mean([r[key] for r in rank_rows]) for key in ("step_ms", *CATEGORIES, *DATA_PARTS, "wire_ms")
    }
    stragglers = [
        {**s, "caused_wait_ms": waits.caused.get(s["rank"], 0.0) if waits.waits else None}
        for s in _stragglers(rank_rows)
    ]
    throughputs = [r["throughput_samples_per_s"] for r in rank_rows]
    job["throughput_samples_per_s"] = sum(throughputs) if all(t is not None for t in throughputs) else None

    warnings = [
        {"rank": log.rank, **{k: w[k] for k in ("collector", "reason", "step") if k in w}}
        for log in logs.values()
        for w in log.warnings
    ]
    collector_off = {w["collector"]: w["reason"] for w in warnings}
    for log in logs.values():
        records = [
            f"{log.torn_lines} unreadable line(s) skipped (the rank was killed while writing?)"
            if log.torn_lines
            else None,
            f"{log.bad_records} record(s) with a bad field skipped" if log.bad_records else None,
            log.problem,
        ]
        warnings += [{"rank": log.rank, "collector": "records", "reason": r} for r in records if r]
    comm_states = ["timed" if any(s.get("comm") for s in log.steps) else None for log in stepped.values()]
    saw_forward = any(s.get("loop_ms") is not None for log in stepped.values() for s in log.steps)
    gpu_lag_ms = round(statistics.median(lags), 3) if lags else None
    workload = next((log.workload for _, log in sorted(logs.items()) if log.workload), None)
    probe = next((log.probe for _, log in sorted(logs.items()) if log.probe and log.probe.get("full")), None)
    samples = load_samples([r.path for r in runs])

    summary = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "ddlprof_version": ddlprof.__version__,
        "generated_unix": time.time(),
        "source": "measured",
        "runs": [str(r.path) for r in runs],
        "world_size": world_size,
        "nodes": len(hosts),
        "hosts": hosts,
        "steps": {
            "recorded": max(len(log.steps) for log in stepped.values()),
            "warmup_dropped": warmup,
            "warmup_auto": warmup_auto,
            "traced_excluded": sorted(excluded_traced),
            "steady_per_rank": min(steady_counts),
        },
        "job": job,
        "reasons": reasons(
            multi_node,
            comm_states,
            saw_forward,
            collector_off,
            probe,
            gpu_lag_ms,
            _wait_reason(job, hosts, absent_ranks(world_size, stepped), world_size),
        ),
        "gpu_lag_ms": gpu_lag_ms,
        "ranks": rank_rows,
        "stragglers": stragglers,
        "wait_charged_to": peer_wait.charges(waits.caused, stragglers, len(rank_rows)),
        "missing_ranks": _missing(logs, world_size),
        "workload": {k: v for k, v in workload.items() if k != "type"} if workload else None,
        "probes": {
            str(rank): {k: v for k, v in log.probe.items() if k != "type"}
            for rank, log in sorted(logs.items())
            if log.probe
        },
        "warnings": warnings,
        "traces": [
            {"rank": log.rank, **{k: t[k] for k in ("steps", "file")}}
            for _, log in sorted(logs.items())
            for t in log.traces
        ],
        "exit_codes": {str(n.get("node_id")): n.get("exit_code") for r in runs for n in r.nodes},
        "gpus": steady_counters(samples, *window),
        "energy": energy(
            samples,
            (window[0], window[1]),
            [log.meta for log in stepped.values()],
            [n for r in runs for n in r.nodes],
            job["step_ms"],
            job["throughput_samples_per_s"],
        ),
        "ddlprof_overhead": _job_cost(costs, logs),
    }
    summary["diagnosis"] = diagnose(summary)
    return summary


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _own_cost(log: RankLog, steady: list[dict[str, Any]], step_ms: float | None) -> dict[str, Any]:
    """What ddlprof says it cost one rank: host time in its hooks per steady step, and the trace
    windows' one-off cost (the traced steps' time above the steady median step, plus any export that
    ran at exit, after the last step)."""
    own = [v for s in steady if (v := _number(s.get("own_ms"))) is not None]
    by_part: dict[str, float] = {}
    for step in steady:
        for part, ms in (step.get("own_ms_by") or {}).items():
            by_part[part] = by_part.get(part, 0.0) + ms
    median_step = statistics.median(s["step_ms"] for s in steady) if steady else None
    window_s = None
    if log.traces and median_step is not None:
        excess = sum(max(0.0, s["step_ms"] - median_step) for s in log.steps if s.get("traced")) / 1e3
        at_exit = sum(_number(t.get("export_s")) or 0.0 for t in log.traces if t.get("at_exit") is True)
        window_s = excess + at_exit
    return {
        "own_ms": statistics.mean(own) if own else None,
        "own_ms_by": {part: total / len(steady) for part, total in by_part.items()} if own else {},
        "step_ms": step_ms,  # the rank's mean steady step, as its row of the summary has it
        "trace_window_s": window_s,
    }


def _job_cost(costs: list[dict[str, Any]], logs: dict[int, RankLog]) -> dict[str, Any]:
    """The job's figures: the mean rank's own time per step, the costliest rank's trace windows (the
    ranks wait for each other at every all-reduce), and the bandwidth probe's seconds."""
    own = [c["own_ms"] for c in costs if c["own_ms"] is not None]
    step = [c["step_ms"] for c in costs if c["own_ms"] is not None and c["step_ms"]]
    windows = [c["trace_window_s"] for c in costs if c["trace_window_s"] is not None]
    probe = [v for log in logs.values() if log.probe and (v := _number(log.probe.get("seconds"))) is not None]
    own_ms = statistics.mean(own) if own else None
    pct = 100 * own_ms / statistics.mean(step) if own_ms is not None and step else None
    ranks = [c["own_ms_by"] for c in costs if c["own_ms"] is not None]
    parts = sorted({part for by in ranks for part in by})
    return {
        "own_ms_per_step": round(own_ms, 4) if own_ms is not None else None,
        "own_ms_per_step_by_hook": {
            part: round(statistics.mean(by.get(part, 0.0) for by in ranks), 4) for part in parts
        },
        "own_pct_of_step": round(pct, 3) if pct is not None else None,
        "trace_window_s": round(max(windows), 3) if windows else None,
        "trace_windows": max((len(log.traces) for log in logs.values()), default=0),
        "probe_s": round(max(probe), 3) if probe else None,
    }


def step_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Every recorded step of every rank with its categories, for timelines."""
    logs = _merge_ranks(runs)
    multi_node = _is_multi_node(runs, logs)
    world_size, hosts = _world_and_hosts(logs)
    waits = _split_waits({rank: log.steps for rank, log in logs.items()}, world_size, len(hosts) == 1)
    return [
        {
            "rank": rank,
            "step": s["step"],
            "traced": bool(s.get("traced")),
            **step_categories(s, multi_node, log.probe, waits.waits.get((rank, s["step"]))),
        }
        for rank, log in sorted(logs.items())
        for s in log.steps
    ]


def _world_and_hosts(logs: dict[int, RankLog]) -> tuple[int, list[str]]:
    """The job's world size and its ranks' hosts, from the ranks' headers."""
    headers = [log.meta for log in logs.values() if log.meta]
    hosts = sorted({str(m.get("host")) for m in headers})
    return max((int(m.get("world_size", 1)) for m in headers), default=1), hosts


def absent_ranks(world_size: int, present: Iterable[int]) -> list[int]:
    """The ranks of a job of ``world_size`` that are not among ``present`` (those with a step)."""
    have = set(present)
    return [rank for rank in range(world_size) if rank not in have]


def ranks_label(ranks: list[int]) -> str:
    """``rank 1`` or ``ranks 1-3,7``."""
    return f"rank{'s' if len(ranks) > 1 else ''} {runs_of(ranks)}"


def _wait_reason(job: dict[str, Any], hosts: list[str], absent: list[int], world_size: int) -> str | None:
    """Why the job's waiting for other ranks is not split from its wire time, where it is not: several
    hosts, ranks with no step (their arrivals are unknown), or no arrival times at all."""
    if job["wait_for_peers_ms"] is not None:
        return None
    if len(hosts) > 1:
        return MULTI_HOST_WAIT
    if absent:
        return ABSENT_RANK_WAIT.format(ranks=ranks_label(absent), world=world_size)
    return NO_PEER_WAIT


def _is_multi_node(runs: list[Run], logs: dict[int, RankLog]) -> bool:
    """Several hosts among the ranks' headers (a rank file without one names no host), or a manifest
    of several nodes."""
    hosts = {str(log.meta.get("host")) for log in logs.values() if log.meta}
    return len(hosts) > 1 or any((r.manifest.get("nnodes") or 1) > 1 for r in runs)


def _missing(logs: dict[int, RankLog], world_size: int) -> list[dict[str, Any]]:
    """Ranks with no records, and ranks that ended without an end record (killed or crashed).

    Absent ranks come as one entry per run of consecutive ranks (``rank`` its first, ``ranks`` the
    run and ``count``), so that a header's world size never makes one entry per rank."""
    problems: list[dict[str, Any]] = []
    present = sorted(rank for rank in logs if rank < world_size)
    for first, end in zip([-1, *present], [*present, world_size], strict=True):
        if end - first > 1:
            problems.append(
                {
                    "rank": first + 1,
                    "ranks": str(first + 1) if end - first == 2 else f"{first + 1}-{end - 1}",
                    "count": end - first - 1,
                    "problem": "no records (the rank never started or never stepped)",
                }
            )
    for rank in present:
        log = logs[rank]
        if log.problem:
            problems.append({"rank": rank, "problem": "unreadable rank file (no rank header)"})
        elif not log.ended:
            reached = log.steps[-1]["step"] if log.steps else 0
            problems.append(
                {
                    "rank": rank,
                    "last_step": reached,
                    "problem": f"stopped after step {reached} with no end record (killed or crashed)",
                }
            )
    return sorted(problems, key=lambda p: p["rank"])


def missing_count(summary: dict[str, Any]) -> int:
    """How many ranks the summary's ``missing_ranks`` names (an entry may stand for a run of them)."""
    return sum(m.get("count", 1) for m in summary["missing_ranks"])


def missing_label(missing: dict[str, Any]) -> str:
    """``rank 3`` or ``ranks 3-99``: what one entry of ``missing_ranks`` is about."""
    return f"ranks {missing['ranks']}" if missing.get("count", 1) > 1 else f"rank {missing['rank']}"


def failed_line(summary: dict[str, Any]) -> str | None:
    """What the job's launcher on each node that failed exited with, or None when none failed (a node
    still running, or recorded before wrap kept exit codes, has None and is not counted)."""
    failed = {
        node: code
        for node, code in (summary.get("exit_codes") or {}).items()
        if isinstance(code, int) and not isinstance(code, bool) and code != 0
    }
    if not failed:
        return None
    codes = ", ".join(f"{code} on {node}" for node, code in sorted(failed.items()))
    return f"the job failed: exit code {codes} (the figures are of the steps recorded before it)"


def one_line(summary: dict[str, Any]) -> str:
    job = summary["job"]

    def ms(key: str) -> str:
        value = job[key]
        return "n/a" if value is None else f"{value:.1f}"

    throughput = job["throughput_samples_per_s"]
    rate = f"; {throughput:,.0f} samples/s" if throughput is not None else ""
    missing = f"; {missing_count(summary)} rank(s) missing" if summary["missing_ranks"] else ""
    own = (summary.get("ddlprof_overhead") or {}).get("own_pct_of_step")
    itself = f"; ddlprof's hooks {own:.2f}% of the step" if own is not None else ""
    failed = f"; {line}" if (line := failed_line(summary)) else ""
    return (
        f"{summary['world_size']} rank(s) on {summary['nodes']} node(s), "
        f"{summary['steps']['steady_per_rank']} "
        f"steady steps: step {ms('step_ms')} ms = compute {ms('compute_ms')} + data {ms('data_stall_ms')} "
        f"+ interconnect {ms('interconnect_stall_ms')} + network {ms('network_stall_ms')} "
        f"+ wait for peers {ms('wait_for_peers_ms')} + other {ms('other_ms')}{rate}{missing}{itself}{failed}"
    )


def summary_path(run: Path) -> Path:
    return run / "summary.json"


def cached_summary(run: Path) -> dict[str, Any] | None:
    """``run``'s summary.json when it is what ``summarize([run])`` would give now, else None.

    That is: written by this ddlprof version with this schema, for exactly this one run directory,
    with the automatic warm-up, and newer than every file it was computed from (a rank that wrote
    more steps since, or a node that joined, makes it stale). A file that passes all of that but
    holds NaN or Infinity, or a field of the wrong type or none where ``summary.schema.json``
    requires one (edited, or cut and patched by hand), is not used either: the dashboard, which
    reads fields deep down, summarises the run from its files instead.
    """
    path = summary_path(run)
    try:
        written = path.stat().st_mtime_ns
        summary = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse)
        (only,) = summary["runs"]
        current = (
            Path(only).resolve() == run.resolve()
            and summary["schema_version"] == SCHEMA_VERSION
            and summary["ddlprof_version"] == ddlprof.__version__
            and summary["steps"]["warmup_auto"] is True
        )
    except (OSError, ValueError, TypeError, KeyError):  # unreadable, or not a summary of ours
        return None
    if not current:
        return None
    newest = max((mtime for _, _, mtime in source_files(run)), default=0)
    return summary if written >= newest and _valid(summary) else None


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _valid(summary: dict[str, Any]) -> bool:
    """``summary`` has what ``summary.schema.json`` requires (jsonschema comes with the dashboard,
    the one reader of cached summaries)."""
    import jsonschema

    return jsonschema.Draft202012Validator(_schema()).is_valid(summary)


@functools.cache
def _schema() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("summary.schema.json")).read_text(encoding="utf-8"))


def write_summary_if_absent(run: Path, summary: dict[str, Any]) -> bool:
    """Leave ``summary`` as ``run``'s summary.json for later readers, unless there is one already (a
    ``ddlprof report`` with its own options is never overwritten) or it cannot be written."""
    try:
        return write_atomic(summary_path(run), json_text(summary), exclusive=True)
    except DdlprofError:
        return False
