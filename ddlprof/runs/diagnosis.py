"""From a run's summary to a verdict and ranked recommendations: what to change, and what it would give.

Pure functions over the summary dict of ``summary.py`` (the report, its HTML and the dashboard share
them). Each rule looks at one kind of limit and returns a recommendation only when the summary holds
the evidence for it. Predicted step times here are arithmetic on the measured breakdown (with, for
``tensor_layout``, a speed-up ddlprof measured on a GPU), never a fitted model: each recommendation
says how its figure was obtained (``basis``) and how far to trust it (``uncertainty``); where no such
arithmetic exists the prediction is null and says so.

Stalls that every rank shares (the least rank's data stall, the least rank's communication on the
wire) are what the job would save; a stall on one rank only is a straggler's, and the other ranks'
wait for it shows up as their exposed communication (``wait_for_peers_ms`` where it is split from the
wire, else inside the stalls), which is why the least rank's exposed communication is the job's real
one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

# the report footnotes launch-bound runs by LAUNCH_BOUND_LAG_MS
from ddlprof.runs.breakdown import CAUSES, LAUNCH_BOUND_LAG_MS, WIRE, batch_per_gpu, busy_ms, finite_number

#: A limit names the run's verdict when removing it would save at least this share of the step ...
VERDICT_SHARE = 0.25
#: ... and gets a recommendation when it would save at least this share (less is noise on a busy host).
RECOMMEND_SHARE = 0.10
#: Buckets smaller than this are latency-bound: a ring all-reduce of 1 MB takes ~0.1 ms at 10 GB/s,
#: the order of one all-reduce's fixed cost on gloo or NCCL.
SMALL_BUCKET_BYTES = 1 << 20
#: DDP's defaults (torch.nn.parallel.DistributedDataParallel): bucket_cap_mb=25, and a first bucket
#: capped at 1 MB (``dist._DEFAULT_FIRST_BUCKET_BYTES``).
DDP_BUCKET_CAP_MB = 25
DDP_FIRST_BUCKET_BYTES = 1 << 20
LOW_UTIL_PCT = 50.0

Recommendation = dict[str, Any]
Rule = Callable[[dict[str, Any]], Recommendation | None]


def _v(row: dict[str, Any], key: str) -> float:
    return row.get(key) or 0.0


def _wire(row: dict[str, Any]) -> float:
    return sum(_v(row, key) for key in WIRE)


def _known(summary: dict[str, Any], key: str) -> bool:
    return all(r.get(key) is not None for r in summary["ranks"]) and bool(summary["ranks"])


def _step(summary: dict[str, Any]) -> float:
    return summary["job"]["step_ms"] or 0.0


def _share(ms: float, summary: dict[str, Any]) -> float:
    step = _step(summary)
    return ms / step if step > 0 else 0.0


def _pct(ms: float, summary: dict[str, Any]) -> str:
    return f"{100 * _share(ms, summary):.0f}%"


def _recommendation(
    summary: dict[str, Any],
    rule: str,
    limit: str,
    action: str,
    evidence: str,
    saving_ms: float | None,
    basis: str,
    uncertainty: str,
    change: dict[str, Any] | None = None,
) -> Recommendation:
    step = _step(summary)
    predicted = None if saving_ms is None else round(max(0.0, step - saving_ms), 2)
    return {
        "rule": rule,
        "limit": limit,
        "action": action,
        "change": change or {},
        "evidence": evidence,
        "saving_ms": None if saving_ms is None else round(saving_ms, 2),
        "predicted_step_ms": predicted,
        "basis": basis,
        "uncertainty": uncertainty,
    }


def _slowest_straggler(summary: dict[str, Any]) -> tuple[dict[str, Any], float, float] | None:
    """The summary's slowest straggler, its busy time and the step the other ranks could keep without
    it (ms): the slowest other rank's busy time, or, where longer, the time the other ranks' DataLoader
    workers need to make a step's batches, since no rank steps faster than its batches come."""
    found = summary.get("stragglers") or []
    named = {s["rank"] for s in found}
    busy = {r["rank"]: busy_ms(r) for r in summary["ranks"]}
    others = [b for rank, b in busy.items() if rank not in named]
    if not found or not others:
        return None
    floors = [_loader_floor_ms(r) for r in summary["ranks"] if r["rank"] not in named]
    worst = max(found, key=lambda s: busy[s["rank"]])
    return worst, busy[worst["rank"]], max(others + [f for f in floors if f is not None])


def _loader_floor_ms(rank: dict[str, Any]) -> float | None:
    """How long a rank's DataLoader workers, all at work, take to make one step's batches, or None
    without workers or batch costs. Ranks whose loaders all need about the step are all input-bound,
    whichever of them waits longest: the one that waits longest is then out of phase, not a straggler
    (2 ranks with 1 worker each, a batch 38 ms to make, step 38.7 ms, seen on CI's 2 cores)."""
    loader = rank.get("loader") or {}
    workers, batch, batches = loader.get("workers"), loader.get("batch_ms"), loader.get("batches_per_step")
    if not all(finite_number(v) and v > 0 for v in (workers, batch, batches)):
        return None
    return batches * batch / workers


def _waited(straggler: dict[str, Any]) -> str:
    caused = straggler.get("caused_wait_ms")
    if caused is None:
        return "the other ranks wait for it in communication"
    return f"the other ranks wait {caused:.1f} ms per step for it in all at the all-reduce"


def straggler(summary: dict[str, Any]) -> Recommendation | None:
    """The slowest straggler: made as fast as the slowest other rank, the others stop waiting for it."""
    slowest = _slowest_straggler(summary)
    if slowest is None:
        return None
    worst, busy, reference = slowest
    rank, saving = worst["rank"], busy - reference
    if _share(saving, summary) < RECOMMEND_SHARE:
        return None
    cause = worst.get("cause", "compute_ms")
    actions = {
        "data_stall_ms": f"rank {rank}'s input pipeline: give its DataLoader more workers or find what "
        "slows its loading there (its storage, its share of CPU cores)",
        "compute_ms": f"rank {rank}'s device: check its clocks and temperature and what else runs on it, "
        "or move the job off that GPU or host",
        "other_ms": f"rank {rank}'s own loop work (logging, evaluation, host copies): spread it over the "
        "ranks or do it less often",
    }
    return _recommendation(
        summary,
        "straggler",
        f"rank {rank} (straggler)",
        actions.get(cause, actions["compute_ms"]),
        f"rank {rank} is busy {busy:.1f} ms per step, {saving:.1f} ms ({_pct(saving, summary)} of the "
        f"step) more than the other ranks need ({reference:.1f} ms: the slowest one's busy time, or where "
        "longer their DataLoader workers' time to make a step's batches), mostly "
        f"{CAUSES.get(cause, cause)}; " + _waited(worst),
        saving,
        "measured arithmetic: job step minus the straggler's busy time above what the other ranks need",
        "exact if the straggler becomes as fast as that rank; ranks sharing CPU cores differ by a few ms "
        "from step to step",
        {"rank": rank},
    )


def input_bound(summary: dict[str, Any]) -> Recommendation | None:
    """Every rank waits for data: more DataLoader workers (or prefetch) hide the loading under compute,
    as far as the CPU cores allow; past that, the preparation has to get cheaper or move to the GPU."""
    if not _known(summary, "data_stall_ms"):
        return None
    rank = min(summary["ranks"], key=lambda r: _v(r, "data_stall_ms"))
    stall = _v(rank, "data_stall_ms")
    if _share(stall, summary) < RECOMMEND_SHARE:
        return None
    rest = _step(summary) - stall
    evidence = (
        f"data stall {stall:.1f} ms per step on every rank ({_pct(stall, summary)} of the step); "
        f"the rest of the step is {rest:.1f} ms"
    )
    floor = _gpu_floor(summary)
    if floor is not None and floor[0] > rest:
        # the GPU runs part of the step while the host already waits for the next batch: once the
        # batches come in time, the step is at least the GPU's own work per step
        evidence += f", {floor[1]}"
        rest = floor[0]
    loader = rank.get("loader")
    if loader and rest > 0:
        return _input_bound_measured(summary, loader, stall, rest, evidence)
    from_none = math.ceil(stall / rest) + 1 if rest > 0 else None
    factor = _step(summary) / rest if rest > 0 else None
    workers = (
        f"from num_workers=0 use at least {from_none}; with W workers already, about {factor:.1f} x W"
        if from_none is not None and factor is not None
        else "many more workers"
    )
    return _recommendation(
        summary,
        "input_bound",
        "input pipeline",
        f"more DataLoader workers ({workers}; one more than loading needs, for jitter), a larger "
        "prefetch_factor if loading is bursty, and pin_memory=True on GPUs",
        evidence,
        stall,
        "measured arithmetic: step minus the data stall every rank shares (loading fully hidden under "
        "the rest of the step by enough workers)",
        "a floor: needs free CPU cores for the workers and storage that keeps up; the workers' own CPU "
        "use can slow compute on a host with few cores",
        {"num_workers": from_none} if from_none is not None else None,
    )


def _gpu_floor(summary: dict[str, Any]) -> tuple[float, str] | None:
    """The GPU's own work per step (ms) and how it was read, or None on the CPU: the larger of

    - the host's compute time plus how far the GPU ran behind the host when backward ended: in a run
      that waits for data the GPU has drained its queue by the time a batch comes, so it works from
      the step's first forward to that lag past the end of backward (1 x H100 JPEG loop, 2 workers:
      20.5 + 16.0 = 36.5 ms; the step with 8 workers and the stall gone was 35.8 ms);
    - the busiest GPU's median NVML utilisation x the step (26.9 ms in that run: NVML's own sampling
      window missed a quarter of it there).
    """
    found: list[tuple[float, str]] = []
    lag, compute = summary.get("gpu_lag_ms"), (summary.get("job") or {}).get("compute_ms")
    if finite_number(lag) and finite_number(compute) and lag > 0:
        found.append(
            (
                compute + lag,
                f"the GPU's work per step {compute + lag:.1f} ms (host compute {compute:.1f} + the GPU "
                f"{lag:.1f} ms behind the host at the end of backward)",
            )
        )
    busy = _gpu_busy_ms(summary)
    if busy is not None:
        found.append((busy, f"the GPU's busy time {busy:.1f} ms (NVML utilisation x step)"))
    return max(found, key=lambda f: f[0]) if found else None


def _gpu_busy_ms(summary: dict[str, Any]) -> float | None:
    """How long the busiest sampled GPU runs kernels per step (median NVML utilisation x step), or
    None without GPU samples."""
    medians = [
        (g.get("util_pct") or {}).get("median") for g in summary.get("gpus") or [] if isinstance(g, dict)
    ]
    medians = [m for m in medians if isinstance(m, int | float) and 0 <= m <= 100]
    return max(medians) / 100 * _step(summary) if medians else None


def _input_bound_measured(
    summary: dict[str, Any], loader: dict[str, Any], stall: float, rest: float, evidence: str
) -> Recommendation:
    """The data advice from what a batch costs to make: a batch takes ``cpu + blocked`` ms in one
    worker when it need not wait for a core, so ``batches x that / rest`` workers make the batches a
    step needs within the rest of the step; their CPU work needs ``batches x cpu`` core-ms per step,
    which the cores left beside the training process (one) must supply."""
    workers, batches = int(loader["workers"]), loader["batches_per_step"]
    cpu, blocked = (
        loader["batch_cpu_ms"],
        max(0.0, loader["batch_ms"] - loader["batch_cpu_ms"] - loader["batch_cpu_wait_ms"]),
    )
    cpus, ranks = loader.get("cpus"), loader.get("ranks_on_host") or 1
    free = max(1.0, cpus / ranks - 1) if isinstance(cpus, int) and cpus > 0 else None
    needed = max(1, math.ceil(batches * (cpu + blocked) / rest))
    cpu_floor = batches * cpu / free if free is not None else 0.0
    predicted_step = max(rest, cpu_floor) + _v(summary["job"], "data_other_ms")
    made = (
        f"; a batch takes {cpu + blocked:.1f} ms to make ({cpu:.1f} CPU, {blocked:.1f} blocked on storage), "
        f"{workers} worker(s)" + (f", {free:.0f} free core(s) per rank" if free is not None else "")
    )
    fetch_bound = blocked >= cpu
    if free is not None and cpu_floor > rest:
        target = max(workers, math.floor(free))
        action = (
            f"prep-bound with every core busy: the {batches * cpu:.0f} CPU-ms of decoding and augmentation "
            f"per step need {batches * cpu / rest:.1f} cores, the rank has {free:.0f} free: move decoding to "
            "the GPU (NVIDIA DALI, torchvision.io.decode_jpeg on CUDA), make augmentation cheaper, or take "
            "an instance with more vCPUs per GPU"
            + (f"; meanwhile num_workers={target}" if target > workers else "")
        )
        change = {"num_workers": target} if target > workers else None
        basis = "measured arithmetic: the rest of the step, or the free cores' time for the batches' CPU work"
    else:
        target = needed + 1  # one more than loading needs, for jitter
        kind = "fetch-bound" if fetch_bound else "prep-bound"
        extra = (
            ", a larger prefetch_factor, and a local cache or faster storage for the dataset"
            if fetch_bound
            else ", and pin_memory=True on GPUs"
        )
        action = f"{kind}: raise num_workers from {workers} to {target}{extra}"
        change = {"num_workers": target}
        basis = "measured arithmetic: batches made in parallel by enough workers within the rest of the step"
    return _recommendation(
        summary,
        "input_bound",
        "input pipeline",
        action,
        evidence + made,
        max(0.0, _step(summary) - predicted_step),
        basis,
        "storage that keeps up with more readers at once is assumed; the workers' CPU use can slow "
        "the training process on a host with few cores",
        change,
    )


def _bucket_facts(summary: dict[str, Any]) -> tuple[list[int], int | None]:
    workload = summary.get("workload") or {}
    listed = workload.get("bucket_sizes")
    sizes = [int(s) for s in listed if finite_number(s)] if isinstance(listed, list) else []
    grad = workload.get("grad_bytes")
    return sizes, int(grad) if finite_number(grad) else (sum(sizes) or None)


def _default_buckets(grad_bytes: int) -> int:
    """How many buckets DDP's defaults make of ``grad_bytes`` (first bucket 1 MB, then 25 MB)."""
    if grad_bytes <= DDP_FIRST_BUCKET_BYTES:
        return 1
    return 1 + math.ceil((grad_bytes - DDP_FIRST_BUCKET_BYTES) / (DDP_BUCKET_CAP_MB << 20))


def _exposed(summary: dict[str, Any]) -> float | None:
    """The least rank's exposed communication on the wire: every rank pays it (a wait for peers, where
    split from it, is the straggler's to remove)."""
    if not _known(summary, "interconnect_stall_ms") and not _known(summary, "network_stall_ms"):
        return None
    return min(_wire(r) for r in summary["ranks"])


def bucket_size(summary: dict[str, Any]) -> Recommendation | None:
    """Communication-bound with many small buckets: fewer, larger buckets pay the fixed cost less often."""
    exposed = _exposed(summary)
    sizes, grad = _bucket_facts(summary)
    if exposed is None or not sizes or not grad or _share(exposed, summary) < RECOMMEND_SHARE:
        return None
    now, after = len(sizes), _default_buckets(grad)
    mean = sum(sizes) / now
    if after >= now or mean >= SMALL_BUCKET_BYTES:
        return None
    saving = exposed * (1 - after / now)
    return _recommendation(
        summary,
        "bucket_size",
        "gradient communication (small buckets)",
        f"raise DDP's bucket_cap_mb to {DDP_BUCKET_CAP_MB} (its default): {now} buckets become {after}",
        f"exposed communication {exposed:.1f} ms per step on every rank ({_pct(exposed, summary)} of the "
        f"step) over {now} buckets of {mean / 1024:.0f} KiB on average",
        saving,
        f"measured arithmetic: buckets under {SMALL_BUCKET_BYTES >> 20} MB cost mostly a fixed per-call "
        "time, so exposed communication scales with the bucket count",
        "a best case: the bytes still travel, and a larger last bucket overlaps less with backward; "
        "the step lands between this and the current step",
        {"bucket_cap_mb": DDP_BUCKET_CAP_MB},
    )


def compression(summary: dict[str, Any]) -> Recommendation | None:
    """Communication-bound with large fp32 buckets: a 16-bit compression hook halves the bytes."""
    exposed = _exposed(summary)
    sizes, _ = _bucket_facts(summary)
    workload = summary.get("workload") or {}
    if exposed is None or not sizes or _share(exposed, summary) < RECOMMEND_SHARE:
        return None
    if workload.get("comm_hook") or sum(sizes) / len(sizes) < SMALL_BUCKET_BYTES:
        return None  # a hook already runs, or the buckets are latency-bound (bucket_size's case)
    if "float" not in re.split(r"[^a-z0-9]+", str(workload.get("parameter_dtype") or "float")):
        return None  # DDP names fp32 parameters "float" (c10::BFloat16 or c10::Half: 16-bit already)
    saving = exposed / 2
    return _recommendation(
        summary,
        "compression",
        "gradient communication (bytes)",
        "register a 16-bit gradient compression hook: ddp.register_comm_hook(None, "
        "torch.distributed.algorithms.ddp_comm_hooks.default_hooks.bf16_compress_hook) "
        "(fp16_compress_hook on GPUs without bf16); Lightning: strategy=DDPStrategy(ddp_comm_hook="
        "bf16_compress_hook); accelerate: Accelerator(kwargs_handlers=[DistributedDataParallelKwargs("
        "comm_hook=DDPCommunicationHookType.BF16)])",
        f"exposed communication {exposed:.1f} ms per step on every rank ({_pct(exposed, summary)} of the "
        f"step) over {len(sizes)} bucket(s) of {sum(sizes) / len(sizes) / 2**20:.1f} MiB on average",
        saving,
        "measured arithmetic: large buckets are bandwidth-bound, and 16-bit gradients halve the bytes",
        "a best case: the casts cost some compute, and a fixed per-call part does not halve; "
        "training numerics change slightly",
        {"comm_hook": "bf16_compress_hook"},
    )


def network(summary: dict[str, Any]) -> Recommendation | None:
    """Traffic between machines limits the step: a better-connected instance (``ddlprof advise``)."""
    if summary.get("nodes", 1) < 2 or not _known(summary, "network_stall_ms"):
        return None
    stall = min(_v(r, "network_stall_ms") for r in summary["ranks"])
    if _share(stall, summary) < RECOMMEND_SHARE:
        return None
    run = summary["runs"][0]
    return _recommendation(
        summary,
        "network",
        "network between machines",
        f"an instance with a faster network, or fewer larger nodes: `ddlprof advise --run {run}` "
        "ranks them with their predicted step time and cost",
        f"network stall {stall:.1f} ms per step on every rank ({_pct(stall, summary)} of the step) "
        f"across {summary['nodes']} nodes",
        None,
        "none here: the stall model behind `ddlprof advise` predicts other instances",
        "see `ddlprof advise` for its predicted step time and range",
    )


def launch_bound(summary: dict[str, Any]) -> Recommendation | None:
    """The GPU keeps up with the host's launches: fewer, larger kernels."""
    lag = summary.get("gpu_lag_ms")
    if lag is None or lag >= LAUNCH_BOUND_LAG_MS:
        return None
    return _recommendation(
        summary,
        "launch_bound",
        "kernel launches",
        "fewer, larger kernels: torch.compile the model, capture the step in CUDA graphs, or a larger "
        "batch per GPU",
        f"at the end of backward the GPU is only {lag:.1f} ms (median) behind the host",
        None,
        "none: ddlprof has no model of launch overhead",
        "measure again after the change",
    )


def unused_search(summary: dict[str, Any]) -> Recommendation | None:
    """DDP searches the autograd graph for unused parameters every step (find_unused_parameters=True,
    the Hugging Face Trainer's default under DDP) and found none: the search is pure cost."""
    workload = summary.get("workload") or {}
    if not workload.get("find_unused_parameters") or workload.get("unused_parameter_bytes") != 0:
        return None
    return _recommendation(
        summary,
        "unused_search",
        "DDP bookkeeping",
        "find_unused_parameters=False: DistributedDataParallel(..., find_unused_parameters=False); "
        "Hugging Face TrainingArguments(ddp_find_unused_parameters=False); Lightning strategy='ddp' "
        "(not 'ddp_find_unused_parameters_true')",
        f"DDP ran with find_unused_parameters=True and, after step {workload.get('after_step', '?')}, had "
        "found 0 bytes of unused parameters (DDP's own logging data)",
        None,
        "none: ddlprof does not time DDP's graph search",
        "measure again after the change; a model that leaves parameters unused in some later step "
        "(a branch taken rarely) needs the flag, and DDP then stops with an error that says so",
        {"find_unused_parameters": False},
    )


#: What NHWC layout and cuDNN's autotuner, together, did to single-GPU bf16 steps on an H100 at batch
#: 128 and up: 1.70x (efficientnet_b0, 128) to 2.38x (resnet18, 1024), five rows; at batch 32 the
#: steps were launch-bound and unchanged (0.64-1.08x). benchmarks/zoo_sweep.py, plain against
#: --channels-last --cudnn-benchmark, results/gpu-1xh100/zoo_sweep_h100.json and zoo_tuned_h100*.json,
#: compared by benchmarks/zoo_tuned_vs_plain.py (BENCHMARKS.md, issue 14). The prediction takes the lowest.
TUNED_CNN_SPEEDUP = (1.70, 2.38)
TUNED_CNN_MIN_BATCH = 128
#: A conv net, for the rule: Conv2d layers at least this share of the layers with parameters
#: (torchvision's resnet50 53 of 107, efficientnet_b0 81 of 131, mobilenet_v3_large 62 of 110;
#: convnext_tiny 22 of 100 and vit_b_16 1 of 77 are not).
CONV_NET_SHARE = 0.25
_SIXTEEN_BIT = ("amp-bf16", "amp-fp16", "bf16", "fp16")  # models.gpus.is_half's, as runs record them


def _gpu_device(summary: dict[str, Any]) -> str | None:
    """The GPU the ranks ran on, by name (None on the CPU or where the ranks differ)."""
    names = {name if isinstance(name := r.get("device"), str) else None for r in summary["ranks"]}
    name = names.pop() if len(names) == 1 else None
    return name if name is not None and not name.startswith("cpu") else None


def tensor_layout(summary: dict[str, Any]) -> Recommendation | None:
    """A convolutional net trained in 16-bit on a GPU in NCHW order or without cuDNN's autotuner: the
    two lines a plain script lacks and tuned code has. Predicted only where it was measured: an H100,
    both lines missing, a batch per GPU of at least TUNED_CNN_MIN_BATCH."""
    workload = summary.get("workload") or {}
    gpu = _gpu_device(summary)
    precision = workload.get("precision")
    convs, layers = (
        value if finite_number(value) else 0 for value in map(workload.get, ("conv2d_layers", "num_layers"))
    )
    # a transformer with a convolution for a stem (ViT, Swin: one Conv2d) is not a conv net
    if convs < CONV_NET_SHARE * layers or not convs or gpu is None or precision not in _SIXTEEN_BIT:
        return None
    nchw, untuned = workload.get("layout") == "nchw", workload.get("cudnn_benchmark") is False
    compute = _v(summary["job"], "compute_ms")
    if not (nchw or untuned) or _share(compute, summary) < RECOMMEND_SHARE:
        return None
    lines = [
        *(["model.to(memory_format=torch.channels_last), and each image batch the same"] if nchw else []),
        *(["torch.backends.cudnn.benchmark = True (for fixed input shapes)"] if untuned else []),
    ]
    state = " and ".join([*(["NCHW layout"] if nchw else []), *(["cudnn.benchmark off"] if untuned else [])])
    batch = batch_per_gpu(summary["ranks"])
    low, high = TUNED_CNN_SPEEDUP
    table = (
        f"ddlprof's sweep on an H100 (bf16): the two together made resnet18, resnet50 and "
        f"efficientnet_b0 steps {low:.2f}-{high:.2f}x faster at batch {TUNED_CNN_MIN_BATCH} and up, and "
        "launch-bound steps at batch 32 no faster (BENCHMARKS.md, issue 14)"
    )
    if not (nchw and untuned):
        unmeasured = "one of the two lines alone"
    elif "H100" not in gpu:
        unmeasured = gpu
    elif batch is None or batch < TUNED_CNN_MIN_BATCH:
        unmeasured = f"batch {batch:.0f} per GPU" if batch is not None else "an unknown batch"
    else:
        unmeasured = None
    saving = None if unmeasured else compute * (1 - 1 / low)
    batch_text = f", batch {batch:.0f} per GPU" if batch is not None else ""
    return _recommendation(
        summary,
        "tensor_layout",
        "convolution layout",
        "; ".join(lines),
        f"{workload['conv2d_layers']} Conv2d layers at {precision}{batch_text} on {gpu}, {state}; compute "
        f"{compute:.1f} ms per step ({_pct(compute, summary)} of the step)",
        saving,
        f"{table}; the lowest speed-up applied to the step's compute"
        if saving is not None
        else f"none measured for {unmeasured}: {table}",
        f"up to {compute * (1 - 1 / high):.1f} ms saved at the highest; a net whose time is not in its "
        "convolutions gains less; other models not measured"
        if saving is not None
        else "measure again after the change",
        {**({"channels_last": True} if nchw else {}), **({"cudnn_benchmark": True} if untuned else {})},
    )


def _one_idle_gpu(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The GPU of a one-GPU job (one rank, one GPU sampled) when it is busy under LOW_UTIL_PCT."""
    gpus = summary.get("gpus") or []
    if summary.get("world_size") != 1 or len(gpus) != 1:
        return None
    median = (gpus[0].get("util_pct") or {}).get("median")
    return gpus[0] if median is not None and median < LOW_UTIL_PCT else None


def share_gpu(summary: dict[str, Any]) -> Recommendation | None:
    """A one-GPU job that leaves its GPU idle: several copies of it (a sweep) can share the GPU;
    ``ddlprof share`` measures what packing them gives."""
    gpu = _one_idle_gpu(summary)
    if gpu is None:
        return None
    util = gpu["util_pct"]["median"]
    return _recommendation(
        summary,
        "share_gpu",
        "GPU utilisation (one-GPU job)",
        f"the GPU is busy only {util:.0f}% of the time: run several copies of the job (a sweep) on it, "
        f"and measure what packing gives first: `ddlprof share -n 1,2,4 [--mode timeslice,mps] -- "
        f"<the job's command>` (samples per GPU-hour and per joule for each number of copies)",
        f"median NVML utilisation {util:.0f}% on GPU {gpu['gpu']} of {gpu['host']} over "
        f"{gpu['samples']} steady samples, one rank",
        None,
        "none: a cost change (more samples per GPU-hour), not a step-time change; `ddlprof share` "
        "measures it",
        "each copy's own step gets slower; NVML utilisation counts a GPU busy when any kernel runs, so "
        "it overstates use and packing may give more than it suggests",
    )


def low_gpu_util(summary: dict[str, Any]) -> Recommendation | None:
    """A GPU busy less than half the time: share it, or rent a smaller one (a one-GPU job gets
    ``share_gpu`` instead)."""
    if _one_idle_gpu(summary) is not None:
        return None
    idle = [
        g for g in summary.get("gpus") or [] if (g.get("util_pct") or {}).get("median", 100) < LOW_UTIL_PCT
    ]
    if not idle:
        return None
    named = ", ".join(f"GPU {g['gpu']} on {g['host']} {g['util_pct']['median']:.0f}%" for g in idle)
    return _recommendation(
        summary,
        "low_gpu_util",
        "GPU utilisation",
        "share the GPU (MPS, MIG, or several jobs) or a smaller instance: `ddlprof advise` prices them",
        f"median NVML utilisation under {LOW_UTIL_PCT:.0f}%: {named}",
        None,
        "none: a cost change, not a step-time change",
        "NVML utilisation counts a GPU busy when any kernel runs, so it overstates use",
    )


RULES: tuple[Rule, ...] = (
    straggler,
    input_bound,
    bucket_size,
    compression,
    network,
    launch_bound,
    tensor_layout,
    unused_search,
    share_gpu,
    low_gpu_util,
)


def _verdict(summary: dict[str, Any]) -> tuple[str, str]:
    """The run's limit in one word and one sentence: the largest saving, if it reaches VERDICT_SHARE."""
    job = summary["job"]
    limits: list[tuple[float, str, str]] = []
    slowest = _slowest_straggler(summary)
    if slowest is not None:
        worst, busy, reference = slowest
        held = busy - reference
        sentence = (
            f"straggler: rank {worst['rank']} holds every step back by {held:.1f} ms = {_pct(held, summary)}"
        )
        limits.append((held, "straggler", f"{sentence} of the step"))
    if _known(summary, "data_stall_ms"):
        data = min(_v(r, "data_stall_ms") for r in summary["ranks"])
        limits.append(
            (
                data,
                "input-bound",
                f"input-bound: data stall {data:.1f} ms = {_pct(data, summary)} of the step",
            )
        )
    exposed = _exposed(summary)
    if exposed is not None:
        where = (
            "machines"
            if _v(job, "network_stall_ms") > _v(job, "interconnect_stall_ms")
            else "ranks of a node"
        )
        limits.append(
            (
                exposed,
                "communication-bound",
                f"communication-bound: exposed gradient communication {exposed:.1f} ms = "
                f"{_pct(exposed, summary)} of the step (mostly between {where})",
            )
        )
    if limits:
        saving, name, sentence = max(limits)
        if _share(saving, summary) >= VERDICT_SHARE:
            return name, sentence
    lag = summary.get("gpu_lag_ms")
    if lag is not None and lag < LAUNCH_BOUND_LAG_MS:
        return (
            "launch-bound",
            f"launch-bound: the GPU is only {lag:.1f} ms behind the host when backward ends",
        )
    compute = _v(job, "compute_ms")
    return (
        "compute-bound",
        f"compute-bound: compute {compute:.1f} ms = {_pct(compute, summary)} of the step; "
        f"no stall reaches {100 * VERDICT_SHARE:.0f}%",
    )


def diagnose(summary: dict[str, Any]) -> dict[str, Any]:
    """The verdict and the recommendations with evidence, largest predicted saving first."""
    verdict, sentence = _verdict(summary)
    found = [r for rule in RULES if (r := rule(summary)) is not None]
    found.sort(key=lambda r: -(r["saving_ms"] if r["saving_ms"] is not None else -1.0))
    return {
        "verdict": verdict,
        "sentence": sentence,
        "recommendations": found,
        "thresholds": {"verdict_share": VERDICT_SHARE, "recommend_share": RECOMMEND_SHARE},
    }
