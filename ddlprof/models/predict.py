"""``ddlprof model predict``: step time and stalls of a DDP job that has not run, with the sources of
every input and a warning wherever the prediction leaves the measured data.

Inputs: the model (its macro features from the shipped dataset for the 20 measured models, else
computed from its name, which imports torch), the batch per GPU, GPUs per node and nodes, and
either the measured single-GPU step time or a GPU type. With a GPU type, the single-GPU step of a
measured model is the dataset's H200 step (interpolated between batch 32 and 64) scaled by
``ddlprof.models.gpus.scale_compute_ms`` from the precision it was measured at (fp32 training under
PyTorch's defaults: TF32 convolutions, fp32 matmuls) to the precision asked for (``--precision``,
``amp`` unless told; the library's default None keeps the measured one), split into compute- and
memory-bound parts by the roofline (its FLOPs against the bytes a step moves,
``ddlprof.models.memory.bytes_moved_per_step``) after its batch-independent part (launches and host
work, :func:`fixed_step_ms`), which is kept as it is, and the
intra-node bandwidth defaults from the GPU's NVLink or PCIe generation, calibrated on the
bandwidth measured between the two H200s.

The training data is world size 2 on one node (2 x H200), batch 32 and 64, 4 to 297 GB/s: anything
else is an extrapolation of the ring model through the fitted coefficients, and says so.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from ddlprof.errors import DdlprofError, require_torch
from ddlprof.models import dataset
from ddlprof.models.calibration import Calibrated, calibrated_step, same_chip_step
from ddlprof.models.gpus import GpuSpec, get_gpu, is_half, resolve_precision, scale_compute_ms
from ddlprof.models.memory import (
    activation_share_per_step,
    bytes_moved_per_step,
    memory_required_gb,
    shipped_memory_estimate,
)
from ddlprof.models.registry import Fitted, load_models
from ddlprof.models.stall_models import components
from ddlprof.models.step_error import DATASET_BATCHES, basis_label, batch_outside, step_error

MEASURED_WORLD_SIZE = 2


class InstanceHardware(Protocol):
    """What a prediction reads of a cloud instance type (``--instance``): the advisor's catalog entry,
    which the caller looks up, so that the models never read the cloud catalog."""

    instance_type: str
    gpu: str
    gpu_count: int
    network_gbps: float | None
    network_up_to: bool | None


def _features(name: str, batch_per_gpu: int) -> tuple[str, dict[str, Any], str]:
    """(model name, macro features, where they come from): the shipped dataset's for a measured
    model (no torch), else ``macro_features`` of the name (imports torch; unknown names raise the
    zoo's one-line error with the closest names)."""
    measured = dataset.lookup_model(name)
    if measured is not None:
        shipped = dataset.shipped_features(measured)
        return measured, shipped, "shipped stall dataset (macro_features of the zoo model)"
    require_torch(f"computing the features of {name!r} (not one of the measured models)")
    from ddlprof.models.features import macro_features

    result = macro_features(name, batch_per_gpu=batch_per_gpu)
    return result["model"], dataset.feature_columns(result), f"macro_features: {result['source']}"


def _reference_line(model: str) -> tuple[pd.Series, float, float]:
    """The dataset's single-GPU steps of ``model`` by batch, and the straight line through its two
    smallest batches: (steps, ms at batch 0, ms per sample); neither negative."""
    rows = dataset.model_rows(model).groupby("batch_per_gpu")["single_gpu_step_ms"].first()
    (b0, t0), (b1, t1) = sorted(rows.items())[:2]
    slope = max(0.0, (t1 - t0) / (b1 - b0))
    return rows, max(0.0, t0 - slope * b0), slope


def fixed_step_ms(model: str) -> float:
    """The part of the dataset's step of ``model`` that does not grow with the batch: the measured
    line's value at batch 0 (kernel launches and host work per step, the optimizer over the weights).
    Scaling carries it to other GPUs and precisions unchanged (``scale_compute_ms``'s ``fixed_ms``): a
    faster GPU does not launch kernels faster, so a small model at a small batch stays launch-bound
    there (efficientnet_b0: 14.9 of its 24.5 ms at batch 32 on the H200)."""
    return _reference_line(model)[1]


def _reference_step(model: str, batch: int) -> tuple[float, str, list[str]]:
    """The measured single-GPU step of a dataset model at ``batch``: as measured at 32 and 64, a
    straight line between them, and outside them fixed + per-sample time from that line."""
    rows, fixed, slope = _reference_line(model)
    gpu = dataset.provenance().get("gpu", "the dataset's GPU")
    if batch in rows.index:
        return float(rows[batch]), f"measured on one {gpu}, batch {batch}", []
    (b0, t0), (b1, _) = sorted(rows.items())[:2]
    if b0 <= batch <= b1:
        return (
            t0 + slope * (batch - b0),
            f"interpolated between batch {b0} and {b1} measured on one {gpu}",
            [],
        )
    step = fixed + slope * batch
    note = f"batch {batch} outside the measured {b0}-{b1}: single-GPU step extrapolated linearly in the batch"
    return step, f"extrapolated from batch {b0} and {b1} measured on one {gpu}", [note]


def _reference_gpu() -> GpuSpec:
    return get_gpu(str(dataset.provenance().get("gpu", "H200")))


def default_intra_busbw(spec: GpuSpec) -> tuple[float | None, str]:
    """Intra-node all-reduce bus bandwidth for a GPU type, calibrated on the measured H200 pair."""
    ref, links = _reference_gpu(), dataset.transports()
    if spec.nvlink_gbps and ref.nvlink_gbps and "nvlink" in links:
        measured = links["nvlink"]["intra_busbw_gbps"]
        value = measured * spec.nvlink_gbps / ref.nvlink_gbps
        if spec.gpu == ref.gpu:
            return value, f"measured between the dataset's 2 x {ref.gpu} over NVLink"
        return value, (
            f"assumed from the GPU type: the {measured:g} GB/s measured between 2 x {ref.gpu} over NVLink, "
            f"scaled by NVLink bandwidth ({spec.nvlink_gbps:g} vs {ref.nvlink_gbps:g} GB/s)"
        )
    if spec.pcie_gen and ref.pcie_gen and "pcie" in links:
        measured = links["pcie"]["intra_busbw_gbps"]
        value = measured * 2.0 ** (spec.pcie_gen - ref.pcie_gen)
        return value, (
            f"assumed from the GPU type: the {measured:g} GB/s measured between 2 x {ref.gpu} over PCIe gen "
            f"{ref.pcie_gen} (peer-to-peer off), halved per older generation (gen {spec.pcie_gen})"
        )
    return None, ""


def default_latency_us(busbw_gbps: float) -> tuple[float, str]:
    """Small all-reduce latency for 2 ranks: the highest of the measured transports at least this
    fast (so that a slower link never gets a lower latency), the fastest one's above them all."""
    links = dataset.transports()
    faster = [v["latency_us"] for v in links.values() if v["intra_busbw_gbps"] >= busbw_gbps]
    if not faster:
        faster = [max(links.values(), key=lambda v: v["intra_busbw_gbps"])["latency_us"]]
    return max(faster), "the dataset's measured 8 KiB all-reduce latency (2 ranks)"


def _scaling_note(note: str) -> str:
    if note.startswith("no workload split known"):
        return "compute scaling: no measured split of the step: assumed half compute-bound, half memory-bound"
    return f"compute scaling: {note}"


def _positive(value: float | None, what: str) -> None:
    if value is not None and not value > 0:
        raise DdlprofError(f"{what} must be positive, got {value:g}")


def measured_precision(name: str) -> str:
    """The precision the dataset's step of ``name`` ran at: fp32 training under PyTorch's defaults,
    i.e. TF32 convolutions (CNNs) or fp32 matmuls (transformers)."""
    return str(dataset.model_rows(name)["precision"].iloc[0])


def _scaled(
    name: str, batch: int, step_ms: float, from_gpu: str, from_precision: str, spec: GpuSpec, chosen: str
) -> tuple[dict[str, Any], float]:
    """``scale_compute_ms`` of a step of dataset model ``name`` measured on ``from_gpu``, to ``spec``
    at ``chosen``: the dataset's batch-independent part (at most the step) kept, the rest split by the
    roofline from the model's shipped FLOPs and bytes. Returns the result and the part kept."""
    flops = dataset.shipped_features(name).get("flops_per_sample")
    moved = bytes_moved_per_step(name, batch)
    split = {"flops_per_sample": flops, "batch": batch, "bytes_per_step": moved} if flops and moved else {}
    fixed = min(fixed_step_ms(name), step_ms)
    result = scale_compute_ms(
        step_ms,
        from_gpu,
        spec.gpu,
        chosen,
        from_precision=from_precision,
        activation_share=activation_share_per_step(name, batch),
        fixed_ms=fixed,
        **split,
    )
    return result, fixed


@dataclass(frozen=True)
class SingleStep:
    """A single-GPU step for a GPU type and precision, and what it rests on."""

    ms: float
    precision: str  # made concrete for the GPU (``amp`` -> ``amp-bf16`` or ``amp-fp16``)
    scaled: bool  # False: the reference GPU at the precision it was measured at
    basis: str  # "scaled from H200 tf32", "scaled from H100 amp-bf16 measured by ddlprof (same chip)"
    batches: tuple[int, ...]  # the measured batches it rests on (outside them: extrapolated)
    spread_pct: float = 0.0  # a step ddlprof measured on its own machine: the spread between machines


def _single_step(
    name: str, batch: int, spec: GpuSpec, precision: str | None, sources: dict[str, str], warnings: list[str]
) -> SingleStep:
    """The single-GPU step of ``name`` at ``batch`` on ``spec`` at ``precision`` (None: the precision the
    dataset measured it at), from the closest measured step: the dataset's own on its GPU at its
    precision; else one measured at this precision on a GPU of the same chip (``same_chip_step``), its
    memory-bound part scaled by the bandwidths; else the dataset's step scaled to ``spec`` and
    ``precision``. (A step of ``spec``'s own type, calibrated or measured by ddlprof, comes before all
    of these: ``calibrated_step``, which the callers ask first.)"""
    ref_gpu = _reference_gpu()
    measured = measured_precision(name)
    chosen = resolve_precision(precision or measured, spec)
    sources["precision"] = (
        f"given ({precision}{': bf16 where the GPU has it, else fp16' if precision == 'amp' else ''})"
        if precision
        else f"as measured: {measured}, what fp32 training runs the model's dominant ops on under PyTorch "
        "defaults (TF32 convolutions, fp32 matmuls)"
    )
    as_measured = spec.gpu == ref_gpu.gpu and chosen == measured
    if not as_measured and (sibling := same_chip_step(name, spec.gpu, batch, chosen)) is not None:
        return _from_same_chip(name, batch, spec, chosen, sibling, sources, warnings)
    reference, how, notes = _reference_step(name, batch)
    warnings += notes
    if as_measured:
        sources["single_gpu_step_ms"] = f"{how} ({reference:.3f} ms, {measured})"
        basis = basis_label(ref_gpu.gpu, measured, scaled=False)
        return SingleStep(reference, chosen, False, basis, DATASET_BATCHES)
    scaled, fixed = _scaled(name, batch, reference, ref_gpu.gpu, measured, spec, chosen)
    sources["single_gpu_step_ms"] = (
        f"{how} ({reference:.3f} ms at {measured}, {fixed:.3f} ms of it batch-independent launch and host "
        f"time, kept), the rest scaled to {spec.gpu} at {chosen} ({scaled['method']}, "
        f"{scaled['compute_fraction']:.0%} compute-bound)"
    )
    where = f"from {ref_gpu.gpu} to {spec.gpu}" if spec.gpu != ref_gpu.gpu else f"on {spec.gpu}"
    warnings.append(
        f"single-GPU step scaled {where} and from {measured} to {chosen} by roofline ratios "
        "(Habitat-style, coarser: one split per step), not measured"
    )
    warnings += [_scaling_note(n) for n in scaled["notes"]]
    from_unit = scaled["from_peak_column"].removesuffix("_tflops")
    to_unit = scaled["to_peak_column"].removesuffix("_tflops")
    if from_unit != to_unit:
        warnings.append(
            f"the step ran on {ref_gpu.gpu}'s {from_unit} units and would run on {spec.gpu}'s {to_unit} "
            "ones: a ratio of peaks across unit types is rough"
        )
    basis = basis_label(ref_gpu.gpu, measured, scaled=True)
    return SingleStep(scaled["predicted_ms"], chosen, True, basis, DATASET_BATCHES)


def _from_same_chip(
    name: str,
    batch: int,
    spec: GpuSpec,
    chosen: str,
    sibling: Calibrated,
    sources: dict[str, str],
    warnings: list[str],
) -> SingleStep:
    """``sibling``'s step (same chip, same precision) on ``spec``: the batch-independent part (the
    dataset's, at most the step) kept, the rest split by the roofline and its memory-bound part scaled
    by the two memory bandwidths (the compute peaks are equal)."""
    scaled, fixed = _scaled(name, batch, sibling.step_ms, sibling.gpu, chosen, spec, chosen)
    sources["single_gpu_step_ms"] = (
        f"{sibling.description}; {sibling.gpu} has the same chip as {spec.gpu} (the same SMs and peaks, "
        f"other memory): {fixed:.3f} ms batch-independent kept, the memory-bound part of the rest "
        f"({1 - scaled['compute_fraction']:.0%}) scaled by the bandwidths"
    )
    warnings.append(
        f"single-GPU step measured on {sibling.gpu} (the same chip as {spec.gpu}) and scaled by memory "
        "bandwidth, not measured on this GPU type"
    )
    basis = f"scaled from {sibling.gpu} {sibling.named_precision} " + (
        "measured by ddlprof (same chip)" if sibling.shipped else "calibrated (same chip)"
    )
    return SingleStep(scaled["predicted_ms"], chosen, True, basis, sibling.batches, sibling.spread_pct)


def _links(
    gpus_per_node: int,
    nodes: int,
    spec: GpuSpec | None,
    intra: float | None,
    inter: float | None,
    sources: dict[str, str],
    warnings: list[str],
) -> dict[str, float | None]:
    """Bandwidths (given, or the intra-node one from the GPU type) and latencies of both levels;
    None where a level does not exist (one GPU per node, one node)."""
    links: dict[str, float | None] = dict.fromkeys(
        ("intra_busbw_gbps", "inter_busbw_gbps", "intra_latency_us", "inter_latency_us")
    )
    if gpus_per_node > 1:
        if intra is not None:
            sources["intra_busbw_gbps"] = "given"
        elif spec is not None:
            intra, sources["intra_busbw_gbps"] = default_intra_busbw(spec)
            if intra is not None:
                warnings.append(
                    f"intra-node bandwidth {sources['intra_busbw_gbps']}; pass --intra-busbw-gbps"
                )
        if intra is None:
            raise DdlprofError(
                "no intra-node bandwidth: pass --intra-busbw-gbps (all-reduce bus bandwidth in GB/s; "
                "297 measured between 2 x H200 over NVLink) or a --gpu with NVLink or PCIe data"
            )
        latency, how = default_latency_us(intra)
        links["intra_busbw_gbps"], links["intra_latency_us"] = intra, latency * (gpus_per_node - 1)
        sources["intra_latency_us"] = f"{how} x (ranks - 1) (ring alpha-beta model)"
    elif intra is not None:
        warnings.append("--intra-busbw-gbps not used: one GPU per node has no intra-node all-reduce")
    if nodes > 1:
        if inter is None:
            raise DdlprofError(
                "no inter-node bandwidth: pass --inter-busbw-gbps (all-reduce bus bandwidth across all "
                "ranks in GB/s, as `ddlprof wrap` probes it in multi-node jobs) or an --instance of the "
                "catalog"
            )
        latency, how = default_latency_us(inter)
        links["inter_busbw_gbps"], links["inter_latency_us"] = inter, latency * (gpus_per_node * nodes - 1)
        sources["inter_busbw_gbps"] = "given"
        sources["inter_latency_us"] = f"{how} x (ranks - 1) (ring alpha-beta model)"
    elif inter is not None:
        warnings.append("--inter-busbw-gbps not used: one node has no inter-node all-reduce")
    return links


def _from_instance(
    item: InstanceHardware,
    gpu: str | None,
    single_gpu_step_ms: float | None,
    gpus_per_node: int,
    nodes: int,
    inter: float | None,
) -> tuple[str | None, float | None, dict[str, Any]]:
    """The GPU type and, for multi-node jobs, the inter-node bandwidth of the instance type.

    The network's all-reduce bus bandwidth is taken as the instance's quoted link rate in bytes
    (Gbit/s / 8): on the testbed NCCL's socket transport reached about that (4.1 GB/s on loopback,
    3.3 GB/s over a ~26 Gbit/s path); EFA/GPUDirect can beat it, TCP on a busy link falls short."""
    facts: dict[str, Any] = {"instance": item.instance_type, "warnings": [], "sources": {}, "derived": {}}
    if gpus_per_node > item.gpu_count:
        raise DdlprofError(
            f"--gpus-per-node {gpus_per_node}: {item.instance_type} has {item.gpu_count} x {item.gpu}"
        )
    if gpu is None and single_gpu_step_ms is None:
        gpu = item.gpu
        facts["sources"]["gpu"] = f"instance catalog: {item.instance_type} has {item.gpu_count} x {item.gpu}"
    elif gpu is not None and gpu != item.gpu:
        facts["warnings"].append(f"--gpu {gpu} differs from {item.instance_type}'s {item.gpu}: --gpu used")
    if nodes > 1 and inter is None:
        if item.network_gbps is None:
            raise DdlprofError(
                f"{item.instance_type}: the catalog has no network bandwidth; pass --inter-busbw-gbps"
            )
        inter = item.network_gbps / 8
        burst = " ('up to': burst, not sustained)" if item.network_up_to else ""
        facts["derived"]["inter_busbw_gbps"] = (
            f"instance catalog: {item.network_gbps:g} Gbit/s{burst} / 8 = {inter:.1f} GB/s, the link rate "
            "taken as the all-reduce bus bandwidth"
        )
    return gpu, inter, facts


def tuned_code_note(model: str, precisions: Iterable[str | None]) -> str | None:
    """For a convolutional net of the dataset at 16-bit: which code its step times are of. ddlprof's
    own measurements are of plain code (NCHW, no autotuner), the published figures in the cross-GPU
    fit of tuned code, and the two lines that separate them were worth 1.7-2.4x on an H100."""
    from ddlprof.runs.diagnosis import TUNED_CNN_MIN_BATCH, TUNED_CNN_SPEEDUP

    sixteen = sorted({p for p in precisions if p is not None and is_half(p)})
    # the dataset's CNNs are those it measured at TF32 (cuDNN convolutions), its transformers at fp32
    if not sixteen or dataset.lookup_model(model) is None or measured_precision(model) != "tf32":
        return None
    low, high = TUNED_CNN_SPEEDUP
    return (
        f"{model} is a convolutional net, here at {', '.join(sixteen)}: steps measured by ddlprof are of "
        "plain PyTorch code (NCHW layout, cudnn.benchmark off), and the scaling to other GPUs is fitted on "
        "those and on published figures of tuned code; channels_last with cudnn.benchmark made such steps "
        f"{low:.2f}-{high:.2f}x faster on an H100 at batch {TUNED_CNN_MIN_BATCH} and up (BENCHMARKS.md: "
        "issue 14), so a job written that way runs faster than these figures, by an amount not predicted "
        "per GPU"
    )


def predict(
    model: str,
    batch_per_gpu: int,
    gpus_per_node: int,
    nodes: int,
    single_gpu_step_ms: float | None = None,
    gpu: str | None = None,
    intra_busbw_gbps: float | None = None,
    inter_busbw_gbps: float | None = None,
    precision: str | None = None,
    use: str = "auto",
    instance: InstanceHardware | None = None,
    fitted: Fitted | None = None,
) -> dict[str, Any]:
    """The prediction, as ``ddlprof model predict --json`` prints it. ``instance``: the catalog entry of
    ``--instance``, whose GPU type and network stand in for ``gpu`` and ``inter_busbw_gbps``."""
    instance_facts: dict[str, Any] = {}
    if instance is not None:
        gpu, inter_busbw_gbps, instance_facts = _from_instance(
            instance, gpu, single_gpu_step_ms, gpus_per_node, nodes, inter_busbw_gbps
        )
    if batch_per_gpu < 1 or gpus_per_node < 1 or nodes < 1:
        raise DdlprofError("--batch-per-gpu, --gpus-per-node and --nodes must be at least 1")
    if (single_gpu_step_ms is None) == (gpu is None):
        raise DdlprofError("pass --single-gpu-step-ms or --gpu (or an --instance: its GPU type is used)")
    _positive(single_gpu_step_ms, "--single-gpu-step-ms")
    _positive(intra_busbw_gbps, "--intra-busbw-gbps")
    _positive(inter_busbw_gbps, "--inter-busbw-gbps")
    if use not in ("auto", "learned", "baseline"):
        raise DdlprofError(f"unknown stall model '{use}'; use auto, learned or baseline")
    world = gpus_per_node * nodes
    warnings: list[str] = list(instance_facts.pop("warnings", []))
    sources: dict[str, str] = dict(instance_facts.pop("sources", {}))

    spec = get_gpu(gpu) if gpu is not None else None
    calibrated = calibrated_step(model, spec.gpu, batch_per_gpu, precision) if spec is not None else None
    if spec is not None and calibrated is None and dataset.lookup_model(model) is None:
        close = difflib.get_close_matches(model.lower(), dataset.known_models(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise DdlprofError(
            f"--gpu scales the single-GPU step measured for the dataset's models, and '{model}' was not "
            f"measured; {hint}Pass --single-gpu-step-ms for other models "
            f"(measured: {', '.join(dataset.known_models())})"
        )
    name, features, sources["features"] = _features(model, batch_per_gpu)
    chosen_precision, single = None, None
    if calibrated is not None:  # a calibration of this GPU type wins over scaling from another GPU
        single_gpu_step_ms, chosen_precision = calibrated.step_ms, calibrated.named_precision
        sources["single_gpu_step_ms"] = calibrated.description
        sources["precision"] = "ddlprof's measurement's" if calibrated.shipped else "the calibration's"
    elif spec is not None:
        single = _single_step(name, batch_per_gpu, spec, precision, sources, warnings)
        single_gpu_step_ms, chosen_precision = single.ms, single.precision
    else:
        sources["single_gpu_step_ms"] = "given"
        if precision is not None:
            warnings.append("--precision only matters with --gpu: not used")
    assert single_gpu_step_ms is not None
    links = _links(gpus_per_node, nodes, spec, intra_busbw_gbps, inter_busbw_gbps, sources, warnings)
    if "inter_busbw_gbps" in instance_facts.get("derived", ()):
        sources["inter_busbw_gbps"] = instance_facts["derived"]["inter_busbw_gbps"]

    fitted = fitted or load_models()
    selected = fitted.selected if use == "auto" else use
    row = {
        "model": name,
        "batch_per_gpu": batch_per_gpu,
        "gpus_per_node": gpus_per_node,
        "nodes": nodes,
        "world_size": world,
        "single_gpu_step_ms": float(single_gpu_step_ms),
        "intra_busbw_gbps": links["intra_busbw_gbps"],
        "inter_busbw_gbps": links["inter_busbw_gbps"],
        "latency_us": links["intra_latency_us"],
        "inter_latency_us": links["inter_latency_us"],
        **features,
    }
    predicted = components(fitted.models[selected], pd.DataFrame([row])).iloc[0]
    warnings += _range_warnings(
        batch_per_gpu, world, nodes, links["intra_busbw_gbps"], links["inter_busbw_gbps"], features
    )
    step = float(predicted["step_ms"])
    estimate = shipped_memory_estimate(name, batch_per_gpu, precision=chosen_precision) if spec else None
    if spec is not None and estimate is not None:
        needed = memory_required_gb(estimate[0])
        if needed > spec.memory_gb:  # advise excludes such an option; a prediction says so
            warnings.append(
                f"batch {batch_per_gpu} does not fit a {spec.gpu}: it needs about {needed:.1f} GB per GPU "
                f"({estimate[1]}, with the allocator and CUDA context allowance), the GPU has "
                f"{spec.memory_gb:g} GB"
            )
    if spec is not None and (tuned := tuned_code_note(name, [chosen_precision])):
        warnings.append(tuned)
    scaling = None
    error = None
    if spec is not None:  # where the single-GPU step comes from, and so its error: as advise quotes it
        from ddlprof.models.published import scaling_error

        if calibrated is not None:
            facts = _Facts(
                calibrated.description, False, chosen_precision, calibrated.description,
                calibrated.spread_pct, batch_outside(batch_per_gpu, calibrated.batches),
            )  # fmt: skip
        else:
            assert single is not None
            basis = single.basis if single.scaled else sources["single_gpu_step_ms"]
            facts = _Facts(
                basis, single.scaled, chosen_precision, None, single.spread_pct,
                batch_outside(batch_per_gpu, single.batches),
            )  # fmt: skip
            if single.scaled:
                scaling = {"basis": basis, **scaling_error()}
        cv_pct = float(fitted.cv(selected)["step_ms_mape_pct"])
        found = step_error(facts, spec.gpu, cv_pct, [_reference_gpu().gpu], scaling_error())
        error = {"pct": round(found.pct, 2), "basis": found.basis}
    return {
        "step_ms": step,
        "interconnect_stall_ms": float(predicted["interconnect_stall_ms"]),
        "network_stall_ms": float(predicted["network_stall_ms"]),
        "single_gpu_step_ms": float(single_gpu_step_ms),
        "throughput_samples_per_s": world * batch_per_gpu * 1e3 / step,
        "model": _model_facts(fitted, selected, use),
        "precision": chosen_precision,
        # the fitted scaling's leave-one-GPU-out error to another GPU or precision (None: not scaled);
        # the stall model's cv covers the H200 data only
        "scaling": scaling,
        # the step's relative error from its basis, as advise quotes it per option (None: no --gpu)
        "error": error,
        "inputs": {
            "model": name,
            "batch_per_gpu": batch_per_gpu,
            "gpus_per_node": gpus_per_node,
            "nodes": nodes,
            "world_size": world,
            "gpu": spec.gpu if spec is not None else None,
            "instance": instance_facts.get("instance"),
            "precision": chosen_precision,
            "single_gpu_step_ms": float(single_gpu_step_ms),
            **links,
            "features": features,
            "sources": sources,
        },
        "warnings": [*fitted.notes, *warnings],
    }


@dataclass(frozen=True)
class _Facts:
    """What the single-GPU step is built on (``ddlprof.models.step_error.StepFacts``)."""

    basis: str
    scaled: bool
    precision: str | None
    calibrated: str | None
    calibrated_spread_pct: float
    batch_outside: tuple[int, int, int] | None


def _model_facts(fitted: Fitted, selected: str, use: str) -> dict[str, Any]:
    """Which model predicted, its validation error, its parameters, and what it was fitted on."""
    described = fitted.models[selected].describe()
    return {
        "name": selected,
        "chosen": "auto: lower leave-one-model-out step error" if use == "auto" else "given (--use)",
        "cv": fitted.cv(selected),
        **{k: v for k, v in described.items() if k in ("kind", "coef", "intercept", "overlap_fraction")},
        "fitted": str(fitted.path),
        "refitted": fitted.refitted,
        "trained_on": {
            k: fitted.record["training"].get(k) for k in ("rows", "models", "dataset_sha256", "store")
        },
    }


def _range_warnings(
    batch: int,
    world: int,
    nodes: int,
    intra: float | None,
    inter: float | None,
    features: dict[str, Any],
) -> list[str]:
    """Where the job leaves the training data (2 x H200 in one host, batch 32-64, 4-297 GB/s)."""
    shipped = dataset.load_dataset()
    low, high = shipped["intra_busbw_gbps"].min(), shipped["intra_busbw_gbps"].max()
    out = []
    if world == 1:
        out.append("one GPU: no DDP communication, the step is the single-GPU step")
    elif world != MEASURED_WORLD_SIZE:
        out.append(
            f"world size {world} outside the training data (world size {MEASURED_WORLD_SIZE} only, 2 x H200 "
            "in one host; no 4-GPU, 8-GPU or multi-node data): the ring terms are extrapolated, not validated"
        )
    if nodes > 1:
        out.append(
            "multi-node: no multi-node data was measured; the network stall is the stall model applied to "
            "the whole ring at the inter-node bandwidth, not validated (network_stall_ms is not evaluable)"
        )
    for what, value in (("intra-node", intra), ("inter-node", inter)):
        if value is not None and not low <= value <= high:
            out.append(f"{what} bandwidth {value:g} GB/s outside the measured {low:g}-{high:g} GB/s")
    if not DATASET_BATCHES[0] <= batch <= DATASET_BATCHES[1]:
        low_batch, high_batch = DATASET_BATCHES
        out.append(
            f"batch per GPU {batch} outside the stall model's training batches {low_batch}-{high_batch}: "
            "its stall terms are extrapolated"
        )
    if not features.get("flops_per_sample"):
        out.append("FLOPs per sample not measured for this model: counted as 0")
    tensors = shipped["num_grad_tensors"]
    if not tensors.min() <= features["num_grad_tensors"] <= tensors.max():
        out.append(
            f"{features['num_grad_tensors']:.0f} gradient tensors, outside the measured "
            f"{tensors.min():.0f}-{tensors.max():.0f}"
        )
    grad = shipped["grad_bytes"]
    if not grad.min() <= features["grad_bytes"] <= grad.max():
        out.append(
            f"{features['grad_bytes'] / 1e6:.0f} MB of gradients, outside the measured "
            f"{grad.min() / 1e6:.0f}-{grad.max() / 1e6:.0f} MB"
        )
    return out
