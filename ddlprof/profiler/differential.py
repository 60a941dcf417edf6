"""``ddlprof stalls``: the published differential method (Stash, Sharma et al. 2022), automated.

With the per-GPU batch fixed, the job runs for a few steady steps in variants:

    one_gpu    world size 1
    one_node   all GPUs of one node (of one emulated node with --emulate-nodes)
    full       the job as launched, or K emulated nodes on this host (--emulate-nodes K), optionally
               each in its own network namespace, joined by links of a chosen rate (--emulate-link,
               see ``netem.py``)

    interconnect stall = t(one_node) - t(one_gpu)
    network stall      = t(full) - t(one_node)

Every variant is an ordinary ``ddlprof wrap`` run under ``--out``; the result is ``stalls.json``.
``--data`` runs other variants through the same runner (``data_ceiling.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddlprof.collectors.config import STOP_AFTER
from ddlprof.errors import DdlprofError
from ddlprof.profiler.netem import Link, Node, emulated_network
from ddlprof.profiler.wrap import wrap_command
from ddlprof.runs.rundir import Run, check_out_folder, json_text, load_run, write_atomic
from ddlprof.runs.summary import summarize

SCHEMA = "ddlprof.stalls"
SCHEMA_VERSION = 2  # 2: "mode" ("comm", or "data" for --data, whose result has its own keys)
SINGLE_NODE = "single node: the job as launched is one node; use --emulate-nodes K to measure a network"


@dataclass
class Launch:
    """One process to start for a variant: its command and the environment it adds."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    node: Node | None = None  # the emulated node's network namespace it runs in (--emulate-link)


@dataclass
class Variant:
    name: str
    processes: int
    launches: list[Launch]
    kept_batches: int = 0  # steps its DataLoaders fetch before replaying (data_ceiling.py): more warm-up


@dataclass
class Measured:
    """Every variant's runs, each read back with its summary, and why a variant failed."""

    runs: dict[str, list[tuple[Run, dict[str, Any]]]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def times(self) -> dict[str, list[float]]:
        return {name: [s["job"]["step_ms"] for _, s in runs] for name, runs in self.runs.items()}

    def jobs(self, name: str) -> list[dict[str, Any]]:
        return [s["job"] for _, s in self.runs.get(name, [])]

    def short(self, steps: int) -> list[str]:
        """One line per variant whose job ended before the ``steps`` asked (its own step count, or
        epochs, is the shorter): its figure comes from fewer steady steps."""
        out = []
        for name, runs in self.runs.items():
            fewest = min(s["steps"]["steady_per_rank"] for _, s in runs)
            if fewest < steps:
                out.append(
                    f"{name}: {fewest} steady step(s) measured, not the {steps} asked: the job ended first "
                    "(let it run at least --warmup + --steps steps of its own)"
                )
        return out


@dataclass
class Job:
    """The torchrun job as launched, read with torchrun's own argument parser."""

    launcher: list[str]  # ["torchrun"] or [python, "-m", "torch.distributed.run"]
    nproc: int
    nnodes: int
    target: list[str]  # script (or -m module) and its arguments


def parse_job(command: list[str]) -> Job:
    from torch.distributed.run import get_args_parser

    if command[:1] and os.path.basename(command[0]) == "torchrun":
        launcher, rest = command[:1], command[1:]
    elif len(command) > 2 and command[1] == "-m" and command[2] == "torch.distributed.run":
        launcher, rest = command[:3], command[3:]
    else:
        raise DdlprofError(
            "stalls: the command must be a torchrun (or python -m torch.distributed.run) launch"
        )
    try:
        args = get_args_parser().parse_args(rest)
    except SystemExit:
        raise DdlprofError(f"stalls: torchrun cannot parse {' '.join(rest)!r}") from None
    nnodes = int(str(args.nnodes).split(":")[-1])
    target = (["-m"] if args.module else []) + [args.training_script, *args.training_script_args]
    if args.no_python:
        raise DdlprofError("stalls: torchrun --no-python jobs are not supported")
    return Job(launcher=launcher, nproc=_nproc(args.nproc_per_node), nnodes=nnodes, target=target)


def _nproc(value: str) -> int:
    if str(value).isdigit():
        return int(value)
    import torch

    if value in ("gpu", "auto") and torch.cuda.is_available():
        return torch.cuda.device_count()
    if value in ("cpu", "auto"):
        return os.cpu_count() or 1
    raise DdlprofError(f"stalls: --nproc_per_node={value} needs GPUs, and none is visible")


def plan(
    job: Job, emulate_nodes: int | None, emulate_pcie: bool, port: int, network: list[Node] | None = None
) -> list[Variant]:
    """The variants to run; with ``network`` (--emulate-link), node K's ranks run in ``network[K]``'s
    namespace and every socket of the job (rendezvous, gloo, NCCL) goes through its shaped interface."""
    if job.nnodes > 1:
        raise DdlprofError(
            "stalls: runs every variant on this host; for a multi-node job run it with --emulate-nodes K "
            "on one host, or profile each node with ddlprof wrap"
        )
    common = common_env(emulate_pcie)

    def local(nproc: int) -> Launch:
        return local_launch(job, nproc, common)

    if not emulate_nodes or emulate_nodes == 1:
        return [Variant("one_gpu", 1, [local(1)]), Variant("one_node", job.nproc, [local(job.nproc)])]
    if job.nproc % emulate_nodes:
        raise DdlprofError(
            f"stalls: --emulate-nodes {emulate_nodes} must divide --nproc_per_node={job.nproc}"
        )
    per_node = job.nproc // emulate_nodes
    nodes = []
    for node in range(emulate_nodes):
        env = {**common, "NCCL_HOSTID": f"emulated-node{node}", "NCCL_SOCKET_IFNAME": "lo"}
        master = "127.0.0.1"
        if network:
            interface = network[node].interface
            env.update(NCCL_SOCKET_IFNAME=interface, GLOO_SOCKET_IFNAME=interface)
            master = network[0].address
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(i) for i in range(job.nproc)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices[node * per_node : (node + 1) * per_node])
        argv = [
            *job.launcher,
            f"--nnodes={emulate_nodes}",
            f"--node_rank={node}",
            f"--nproc_per_node={per_node}",
            f"--master_addr={master}",
            f"--master_port={port}",
            *job.target,
        ]
        nodes.append(Launch(argv, env, network[node] if network else None))
    return [
        Variant("one_gpu", 1, [local(1)]),
        Variant("one_node", per_node, [local(per_node)]),
        Variant("full", job.nproc, nodes),
    ]


def common_env(emulate_pcie: bool) -> dict[str, str]:
    """What every variant's processes get: the same OpenMP threads (torchrun sets 1 only for several
    processes per node), so that CPU oversubscription never passes for a stall."""
    common = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if emulate_pcie:
        common["NCCL_P2P_DISABLE"] = "1"
    return common


def local_launch(job: Job, nproc: int, env: dict[str, str]) -> Launch:
    """The job on this host alone, with ``nproc`` processes."""
    return Launch([*job.launcher, "--standalone", f"--nproc_per_node={nproc}", *job.target], dict(env))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (for the emulated nodes' rendezvous)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_variant(variant: Variant, out: Path, stop_after: int, timeout_s: float) -> tuple[Path, str | None]:
    """Run every launch of the variant under ``ddlprof wrap`` into ``out``; the error, if any."""
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.parent / f"{out.name}.log"
    procs = []
    with log_path.open("w") as log:
        for launch in variant.launches:
            env = {**os.environ, **launch.env, STOP_AFTER: str(stop_after)}
            wrap = wrap_command(out, launch.argv, "--trace-steps", "0", "--no-gpu-sampling")
            if launch.node is not None:
                wrap = launch.node.command(wrap)
            procs.append(subprocess.Popen(wrap, env=env, stdout=log, stderr=subprocess.STDOUT))
        codes = _wait_all(procs, time.monotonic() + timeout_s)
    if any(codes):
        tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()][-3:]
        return out, f"exit codes {codes}: " + " | ".join(tail)
    return out, None


def _wait_all(procs: list[subprocess.Popen], deadline: float) -> list[int]:
    """Wait for the launches of one variant; when one fails or time runs out, stop the others, which
    would otherwise wait for it (an emulated node whose peer is gone hangs in the rendezvous); when
    ddlprof itself is interrupted, stop them all before the interruption goes on."""
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                _stop(procs)
                break
            time.sleep(0.2)
    except BaseException:
        _stop(procs)
        raise
    return [proc.wait() for proc in procs]


def _stop(procs: list[subprocess.Popen], grace_s: float = 10) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def single_run_attribution(jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What one wrapped run of the full job attributes, as medians over the repeats, for comparing
    with the differential result: the same run directories, read by ``ddlprof report``. The stalls
    there are the wire; the differential ones also hold the ranks' waits for each other, which the
    report gives apart where it can (``wait_for_peers_ms``)."""
    if not jobs:
        return None
    out: dict[str, Any] = {}
    for key in ("interconnect_stall_ms", "network_stall_ms", "wait_for_peers_ms"):
        values = [j[key] for j in jobs if j[key] is not None]
        out[key] = statistics.median(values) if values else None
        pcts = [100 * j[key] / j["step_ms"] for j in jobs if j[key] is not None and j["step_ms"]]
        out[key.replace("_ms", "_pct")] = statistics.median(pcts) if pcts else None
    return out


def stalls_result(times: dict[str, list[float]], failures: dict[str, str], emulated: bool) -> dict[str, Any]:
    """The arithmetic: medians per variant, differences, and the spread of per-repeat differences."""

    def diff(hi: str, lo: str) -> dict[str, Any] | None:
        return difference(times, hi, lo, "full" if emulated else "one_node")

    reasons = {}
    interconnect = diff("one_node", "one_gpu")
    if interconnect is None:
        reasons["interconnect"] = "a variant it needs failed: " + "; ".join(failures.values())
    network = diff("full", "one_node") if emulated else None
    if not emulated:
        reasons["network"] = SINGLE_NODE
    elif network is None:
        reasons["network"] = "a variant it needs failed: " + "; ".join(failures.values())
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "variants": variant_rows(times, failures, ["one_gpu", "one_node", *(["full"] if emulated else [])]),
        "interconnect_stall": interconnect,
        "network_stall": network,
        "reasons": reasons,
    }


def _median(times: dict[str, list[float]], name: str) -> float | None:
    return statistics.median(times[name]) if times.get(name) else None


def variant_rows(times: dict[str, list[float]], failures: dict[str, str], names: list[str]) -> dict[str, Any]:
    """Each variant's median step, its runs' steps and its error, for ``stalls.json``."""
    return {
        name: {
            "step_ms": _median(times, name),
            "repeats_ms": times.get(name, []),
            "error": failures.get(name),
        }
        for name in names
    }


def difference(times: dict[str, list[float]], hi: str, lo: str, top: str) -> dict[str, Any] | None:
    """Variant ``hi``'s median step minus ``lo``'s, its share of ``top``'s, and the spread of the
    per-repeat differences; None where either did not run."""
    high, low, whole = _median(times, hi), _median(times, lo), _median(times, top)
    if high is None or low is None:
        return None
    pairs = [a - b for a, b in zip(times[hi], times[lo], strict=False)]
    value = high - low
    spread = [min(pairs), max(pairs)] if pairs else None
    return {"ms": value, "pct_of_step": 100 * value / whole if whole else None, "spread_ms": spread}


def run_stalls(
    command: list[str],
    steps: int,
    repeats: int,
    warmup: int,
    emulate_nodes: int | None,
    emulate_pcie: bool,
    out: Path,
    timeout_s: float,
    emulate_link: Link | None = None,
) -> dict[str, Any]:
    """Run the variants ``repeats`` times, interleaved, and return (and write) ``stalls.json``."""
    check_out_folder(out)
    if emulate_link and not (emulate_nodes and emulate_nodes > 1):
        raise DdlprofError("--emulate-link joins emulated nodes: give --emulate-nodes K (2 or more) too")
    launched = parse_job(command)
    plan(launched, emulate_nodes, emulate_pcie, free_port())  # the job's errors, before anything is built
    network = emulated_network(emulate_nodes, emulate_link) if emulate_link else contextlib.nullcontext()
    emulated = bool(emulate_nodes and emulate_nodes > 1)
    with terminate_as_interrupt(), network as nodes:
        # a fresh rendezvous port each repeat, taken just before it is used
        variants = plan(launched, emulate_nodes, emulate_pcie, 0, nodes)
        measured = run_variants(
            lambda: plan(launched, emulate_nodes, emulate_pcie, free_port(), nodes),
            steps,
            repeats,
            warmup,
            out,
            timeout_s,
        )
    full = variants[-1].name
    result = stalls_result(measured.times(), measured.failures, emulated)
    result["single_run"] = single_run_attribution(measured.jobs(full))
    single = result["variants"].get("one_gpu", {}).get("step_ms")
    last = measured.runs[full][-1] if measured.runs.get(full) else None
    result["dataset"] = _record_training_row((last[0].path, last[1]) if last else None, single)
    result.update(
        {
            "warnings": measured.short(steps),
            "mode": "comm",
            "command": command,
            "steps": steps,
            "warmup": warmup,
            "repeats": repeats,
            "emulate_nodes": emulate_nodes,
            "emulate_pcie": emulate_pcie,
            "emulate_link": (
                {"rate_gbps": emulate_link.rate_bps / 1e9, "delay_ms": emulate_link.delay_s * 1e3}
                if emulate_link
                else None
            ),
            "out": str(out),
        }
    )
    write_atomic(out / "stalls.json", json_text(result))
    return result


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, ``timeout``, a scheduler) unwinds as Ctrl-C does, so that the variant's ranks
    are stopped and the emulated network is removed on the way out; the exit code stays SIGTERM's."""

    def interrupt(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_variants(
    make_plan: Callable[[], list[Variant]], steps: int, repeats: int, warmup: int, out: Path, timeout_s: float
) -> Measured:
    """Run the variants of ``make_plan()`` (called once per repeat) ``repeats`` times, interleaved, each
    under ``out/<variant>/r<repeat>``, and read each run back with ``ddlprof report``'s summary of its
    steady steps. A variant that fails once is not run again."""
    from rich.progress import Progress

    measured = Measured()
    with Progress(transient=True) as progress:
        task = progress.add_task("ddlprof stalls", total=None)
        for repeat in range(repeats):
            variants = make_plan()
            progress.update(task, total=repeats * len(variants))
            for variant in variants:
                progress.update(
                    task, description=f"{variant.name} ({variant.processes} proc), repeat {repeat + 1}"
                )
                if variant.name not in measured.failures:
                    skip = warmup + variant.kept_batches
                    run_dir, error = run_variant(
                        variant, out / variant.name / f"r{repeat}", skip + steps, timeout_s
                    )
                    try:
                        if error is None:
                            run = load_run(run_dir)
                            summary = summarize([run], warmup=skip)
                            measured.runs.setdefault(variant.name, []).append((run, summary))
                    except DdlprofError as exc:
                        error = str(exc)
                        if variant.kept_batches:
                            error += (
                                f" (this variant leaves out --warmup and the {variant.kept_batches} steps "
                                f"that fill its kept batches: the job needs {skip + steps} steps)"
                            )
                    if error is not None:
                        measured.failures[variant.name] = f"{variant.name}: {error}"
                progress.advance(task)
    return measured


def _record_training_row(full: tuple[Path, dict[str, Any]] | None, single: float | None) -> dict[str, Any]:
    """Add the full job's last measured run to the local dataset with the one-GPU step time beside
    it: a row the stall models learn from (``ddlprof model fit``), which a plain report cannot give."""
    from ddlprof.runs import store

    if single is None or full is None:
        return {"stored": False, "reason": "the one-GPU or the full variant did not run"}
    if store.disabled():
        return {"stored": False, "reason": f"{store.NO_STORE_ENV} is set"}
    run_dir, summary = full
    reasons: list[str] = []
    if store.record_run(summary, [run_dir], on_error=reasons.append, measured={"single_gpu_step_ms": single}):
        # the stall models are of GPU jobs: a CPU run's "interconnect" is its ranks sharing cores
        learned = store.run_row(summary, [run_dir])["gpu"] is not None
        database = str(store.database_path())
        return {"stored": True, "database": database, "run": str(run_dir), "learned": learned}
    return {"stored": False, "reason": reasons[0] if reasons else "not written"}
