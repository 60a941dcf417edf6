"""Step time and throughput of a training job on many cloud options at once, and its GPU memory need.

What every option's step time is built from (a :class:`StepBasis`), in one of three ways:

- *dataset*: a model of the shipped stall dataset (``ddlprof/models/data/stall_dataset.csv``),
  predicted exactly as ``ddlprof model predict --instance TYPE`` predicts it
  (``ddlprof.models.predict``): the single-GPU step measured on an H200, scaled to the instance's
  GPU by roofline ratios; the intra-node bandwidth from the GPU's NVLink or PCIe generation; across
  instances the catalog's network rate / 8 as the all-reduce bandwidth; the stall model with the
  lower leave-one-model-out error on top. No torch.
- *run* (``--run RUN_DIR``): the run summarised from its files, as ``ddlprof report`` summarises it.
  Options with the run's GPU type, GPUs per node and node count get the *measured* step; the others
  the same prediction from the run's single-GPU step (step - interconnect - network stall) scaled to
  each GPU type by ``scale_compute_ms``, with the run's data stall and loop overhead carried over
  unchanged (``fixed_ms``), and the run's DDP workload features (no FLOPs: counted as 0).
- *given* (``--single-gpu-step-ms`` measured on ``--step-gpu``): as for a run; a model outside the
  dataset gets its features and memory from ``macro_features``, which imports torch.

:func:`predict_steps` predicts all (instance type, count) pairs in one ``components`` call: one
``predict()`` per option costs about 16 ms, too slow for the few hundred pairs of the catalog.

Memory: the training-memory estimate per GPU is shipped for the dataset's models
(``ddlprof/models/data/memory_estimates.csv``, built by ``benchmarks/build_memory_table.py``), comes
from ``macro_features`` when torch is needed anyway, or is the run's peak NVML memory for a run of
another model.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddlprof.advisor.catalog import Instance
from ddlprof.errors import DdlprofError, require_torch
from ddlprof.models.memory import shipped_memory_estimate
from ddlprof.models.step_error import basis_label, batch_outside

# -- what the step times are built from -------------------------------------------------------------


@dataclass
class StepBasis:
    """The model, batch and measurements every option's step time is built from."""

    model: str
    batch_per_gpu: int
    features: dict[str, float]
    kind: str  # "dataset", "run" or "given"
    description: str
    precision: str | None = None  # asked for (``amp`` resolves per GPU); None: as measured
    measured_precision: str | None = None  # what the measured step ran at (run, given)
    single_gpu_step_ms: float | None = None  # on ``gpu`` (run, given)
    gpu: str | None = None
    fixed_ms: float = 0.0
    measured: dict[str, Any] | None = None
    memory_bytes: float | None = None
    memory_source: str | None = None
    notes: list[str] = field(default_factory=list)


def _closest_models(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.5)
    return f"; closest: {', '.join(close)}" if close else ""


def measured_model(model: str) -> str:
    """The dataset's name of a measured model; an unknown name is an error with the closest names."""
    from ddlprof.models import dataset

    name = dataset.lookup_model(model)
    if name is None:
        known = dataset.known_models()
        raise DdlprofError(
            f"unknown model {model!r}{_closest_models(model, known)}; advise predicts the measured models "
            f"({', '.join(known)}); for another model pass --run RUN_DIR (a ddlprof run of it) or "
            "--single-gpu-step-ms MS --step-gpu GPU"
        )
    return name


def dataset_basis(model: str, batch: int, precision: str | None = None) -> StepBasis:
    """A model of the shipped stall dataset: features, and the memory estimate, shipped (no torch)."""
    from ddlprof.models import dataset

    name = measured_model(model)
    features = dataset.shipped_features(name)
    memory = shipped_memory_estimate(name, batch, precision=precision)
    return StepBasis(
        model=name,
        batch_per_gpu=batch,
        features=features,
        kind="dataset",
        description=f"{name}: single-GPU step measured on one {dataset.provenance().get('gpu', 'H200')} "
        f"at {dataset.model_rows(name)['precision'].iloc[0]}",
        precision=precision,
        measured_precision=str(dataset.model_rows(name)["precision"].iloc[0]),
        memory_bytes=memory[0] if memory else None,
        memory_source=memory[1] if memory else None,
    )


def _run_summary(run_dir: Path) -> dict[str, Any]:
    """The run summarised from its own files, as ``ddlprof report`` does with its automatic warm-up;
    never its summary.json, which may be stale, edited or cut (and is not checked against its schema
    outside the dashboard)."""
    from ddlprof.runs.rundir import load_run
    from ddlprof.runs.summary import summarize

    return summarize([load_run(run_dir)])


def run_basis(run_dir: Path, model: str | None, batch: int | None, precision: str | None) -> StepBasis:
    """A wrapped run: its measured step, its single-GPU step and GPU, its DDP workload features."""
    from ddlprof.models import dataset
    from ddlprof.models.gpus import get_gpu
    from ddlprof.runs.store import run_row

    summary = _run_summary(run_dir)
    row = run_row(summary, [run_dir])
    if row.get("step_ms") is None or not row.get("gpu"):
        raise DdlprofError(f"{run_dir}: the run has no steady step time on a GPU; advise needs a GPU run")
    try:
        gpu = get_gpu(str(row["gpu"])).gpu
    except DdlprofError as exc:
        raise DdlprofError(
            f"{run_dir}: the run's GPU {row['gpu']!r} is not in the GPU table ({exc})"
        ) from None
    run_batch = row.get("batch_per_gpu")
    if not run_batch:
        raise DdlprofError(f"{run_dir}: the run has no throughput, so its batch per GPU is unknown")
    run_batch = round(run_batch)
    if batch is not None and batch != run_batch:
        raise DdlprofError(
            f"--batch-per-gpu {batch}: the run used {run_batch} per GPU; with --run advise prices the run's "
            "batch (leave --batch-per-gpu out)"
        )
    known = dataset.lookup_model(model) if model else None
    notes = []
    if known is not None:
        ds = dataset_basis(known, run_batch)
        features, name, memory = ds.features, known, (ds.memory_bytes, ds.memory_source)
    else:
        if row.get("grad_bytes") is None or row.get("num_buckets") is None:
            raise DdlprofError(
                f"{run_dir}: the run has no DDP workload record (gradients, buckets); pass --model with one "
                "of the measured models, or wrap a DDP job"
            )
        features = {c: float(row.get(c) or 0) for c in dataset.FEATURE_COLUMNS}
        name = model or str(row.get("model") or "the run's model")
        notes.append("FLOPs per sample not known for a run's model: counted as 0 in the stall model")
        peak = _peak_memory_bytes(summary)
        memory = (
            (peak, "peak GPU memory used in the run (NVML), at the run's batch") if peak else (None, None)
        )
    step = float(row["step_ms"])
    stalls = sum(float(row.get(k) or 0) for k in ("interconnect_stall_ms", "network_stall_ms"))
    single = step - stalls
    fixed = sum(float(row.get(k) or 0) for k in ("data_stall_ms", "other_ms"))
    gpus_per_node, nodes = int(row.get("gpus_per_node") or 1), int(row.get("nodes") or 1)
    measured_precision = row.get("precision")
    if not measured_precision:
        measured_precision = precision or "fp32"
        notes.append(
            "the run recorded no precision: its step is taken as measured at the --precision asked for "
            f"({measured_precision}), and scaled to other GPUs at it"
        )
    return StepBasis(
        model=name,
        batch_per_gpu=run_batch,
        features=features,
        kind="run",
        description=(
            f"run {run_dir}: {step:.2f} ms per step measured on {gpus_per_node} x {gpu} x {nodes} node(s) "
            f"at {measured_precision}; "
            f"single-GPU step {single:.2f} ms = step - interconnect - network stall"
        ),
        precision=precision,
        measured_precision=str(measured_precision),
        single_gpu_step_ms=single,
        gpu=gpu,
        fixed_ms=min(fixed, single),
        measured={
            "gpu": gpu,
            "gpus_per_node": gpus_per_node,
            "nodes": nodes,
            "step_ms": step,
            "interconnect_stall_ms": float(row.get("interconnect_stall_ms") or 0),
            "network_stall_ms": float(row.get("network_stall_ms") or 0),
            "run": str(run_dir),
        },
        memory_bytes=memory[0],
        memory_source=memory[1],
        notes=notes,
    )


def _peak_memory_bytes(summary: dict[str, Any]) -> float | None:
    peaks = [
        g["mem_used_mib"]["max"]
        for g in summary.get("gpus") or []
        if isinstance(g.get("mem_used_mib"), dict) and g["mem_used_mib"].get("max")
    ]
    return max(peaks) * 2**20 if peaks else None


def given_basis(
    model: str, batch: int, single_gpu_step_ms: float, step_gpu: str, precision: str | None
) -> StepBasis:
    """A single-GPU step the user measured on ``step_gpu``; features shipped or (other models) from
    ``macro_features``, which imports torch."""
    from ddlprof.models import dataset
    from ddlprof.models.gpus import get_gpu

    if not single_gpu_step_ms > 0:
        raise DdlprofError(f"--single-gpu-step-ms must be positive, got {single_gpu_step_ms:g}")
    gpu = get_gpu(step_gpu).gpu
    known = dataset.lookup_model(model)
    notes = []
    if known is not None:
        ds = dataset_basis(known, batch)
        name, features, memory = known, ds.features, (ds.memory_bytes, ds.memory_source)
    else:
        require_torch(f"computing the features of {model!r} (not one of the measured models)")
        from ddlprof.models.features import macro_features

        result = macro_features(model, batch_per_gpu=batch)
        name = result["model"]
        features = {c: float(v or 0) for c, v in dataset.feature_columns(result).items()}
        total = result["memory_bytes"].get("total")
        memory = (
            (total, f"macro_features estimate ({result['source']}), batch {batch}") if total else (None, None)
        )
    if precision is None:
        precision = "fp32"
        notes.append("precision not given: the step is taken as measured at fp32 (pass --precision)")
    notes.append(f"--single-gpu-step-ms is taken as measured at the --precision asked for ({precision})")
    return StepBasis(
        model=name,
        batch_per_gpu=batch,
        features=features,
        kind="given",
        description=f"{name}: single-GPU step {single_gpu_step_ms:g} ms on {gpu} at {precision} (given)",
        precision=precision,
        measured_precision=precision,
        single_gpu_step_ms=float(single_gpu_step_ms),
        gpu=gpu,
        memory_bytes=memory[0],
        memory_source=memory[1],
        notes=notes,
    )


# -- step times of many options in one batch --------------------------------------------------------


@dataclass(frozen=True)
class StepEstimate:
    step_ms: float
    single_gpu_step_ms: float
    interconnect_stall_ms: float
    network_stall_ms: float
    source: str  # "predicted" or "measured"
    inter_busbw_gbps: float | None = None
    precision: str | None = None  # the precision of this GPU the step is for (amp made concrete)
    basis: str = ""  # what the single-GPU step is: "as measured on H200 (tf32)", "scaled from H200 tf32"
    scaled: bool = False  # the single-GPU step was scaled to another GPU or precision
    warnings: tuple[str, ...] = ()  # what the scaling warned of
    calibrated: str | None = None  # the single-GPU step is a calibration of the GPU type: whence
    # spread between machines of the GPU type, where the step was measured on ddlprof's, not the user's
    calibrated_spread_pct: float = 0.0
    # (batch, lowest, highest measured batch) where the step is extrapolated beyond what was measured
    batch_outside: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class _Single:
    ms: float
    precision: str
    basis: str
    scaled: bool
    warnings: tuple[str, ...]
    calibrated: str | None = None
    batch_outside: tuple[int, int, int] | None = None
    spread_pct: float = 0.0


def predict_steps(
    basis: StepBasis, configs: Sequence[tuple[Instance, int]], fitted: Any
) -> dict[tuple[str, int], StepEstimate | str]:
    """Step time of each (instance type, instance count): an estimate, or why there is none.

    The same inputs as ``ddlprof.models.predict.predict(model, batch, gpu_count, count,
    instance=TYPE)``, built per option and predicted together in one ``components`` call."""
    import pandas as pd

    from ddlprof.models import predict as predict_module
    from ddlprof.models.calibration import calibrated_step
    from ddlprof.models.gpus import get_gpu, resolve_precision, scale_compute_ms
    from ddlprof.models.stall_models import components

    singles: dict[str, _Single | str] = {}

    def scaled_single(spec: Any) -> _Single:
        warnings: list[str] = []
        if basis.kind == "dataset":
            found = predict_module._single_step(
                basis.model, basis.batch_per_gpu, spec, basis.precision, {}, warnings
            )
            label = found.basis
            outside = batch_outside(basis.batch_per_gpu, found.batches)
            if outside:
                label += f", batch {outside[0]} extrapolated from the measured {outside[1]}-{outside[2]}"
            return _Single(
                found.ms, found.precision, label, found.scaled, tuple(warnings), batch_outside=outside,
                spread_pct=found.spread_pct,
            )  # fmt: skip
        assert basis.gpu is not None and basis.single_gpu_step_ms is not None
        measured = resolve_precision(
            basis.measured_precision or basis.precision or "fp32", get_gpu(basis.gpu)
        )
        chosen = resolve_precision(basis.precision or measured, spec)
        if spec.gpu == basis.gpu and chosen == measured:
            return _Single(
                basis.single_gpu_step_ms, chosen, basis_label(basis.gpu, measured, False), False, ()
            )
        result = scale_compute_ms(
            basis.single_gpu_step_ms,
            basis.gpu,
            spec.gpu,
            chosen,
            from_precision=measured,
            fixed_ms=basis.fixed_ms,
        )
        warnings.append(
            f"single-GPU step scaled from {basis.gpu} {measured} to {spec.gpu} {chosen} by roofline ratios, "
            "not measured"
        )
        warnings += [predict_module._scaling_note(n) for n in result["notes"]]
        label = basis_label(basis.gpu, measured, True)
        return _Single(float(result["predicted_ms"]), chosen, label, True, tuple(warnings))

    def calibrated_single(spec: Any) -> _Single | None:
        """A calibration of this GPU type (``ddlprof calibrate``) wins over scaling from another GPU; a
        step measured on this very GPU type stays first."""
        if spec.gpu == basis.gpu:
            return None
        chosen = resolve_precision(basis.precision, spec) if basis.precision else None
        found = calibrated_step(basis.model, spec.gpu, basis.batch_per_gpu, chosen)
        if found is None:
            return None
        how = found.description
        outside = batch_outside(basis.batch_per_gpu, found.batches) if found.batches else None
        return _Single(
            found.step_ms,
            chosen or found.named_precision,
            how,
            False,
            (),
            calibrated=how,
            batch_outside=outside,
            spread_pct=found.spread_pct,
        )

    def single_step(gpu_name: str) -> _Single | str:
        if gpu_name not in singles:
            try:
                spec = get_gpu(gpu_name)
                singles[gpu_name] = calibrated_single(spec) or scaled_single(spec)
            except DdlprofError as exc:
                singles[gpu_name] = f"no single-GPU step for {gpu_name}: {exc}"
        return singles[gpu_name]

    out: dict[tuple[str, int], StepEstimate | str] = {}
    rows, keys = [], []
    for instance, count in configs:
        key = (instance.instance_type, count)
        single = single_step(instance.gpu)
        if isinstance(single, str):
            out[key] = single
            continue
        inter = None
        if count > 1:
            if instance.network_gbps is None:
                out[key] = (
                    f"no network bandwidth for {instance.instance_type} in the catalog snapshot: a job "
                    "across instances cannot be predicted"
                )
                continue
            inter = instance.network_gbps / 8
        try:
            links = predict_module._links(
                instance.gpu_count, count, get_gpu(instance.gpu), None, inter, {}, []
            )
        except DdlprofError as exc:
            out[key] = f"step time not predictable: {exc}"
            continue
        rows.append(
            {
                "model": basis.model,
                "batch_per_gpu": basis.batch_per_gpu,
                "gpus_per_node": instance.gpu_count,
                "nodes": count,
                "world_size": instance.gpu_count * count,
                "single_gpu_step_ms": single.ms,
                "intra_busbw_gbps": links["intra_busbw_gbps"],
                "inter_busbw_gbps": links["inter_busbw_gbps"],
                "latency_us": links["intra_latency_us"],
                "inter_latency_us": links["inter_latency_us"],
                **basis.features,
            }
        )
        keys.append((key, instance, count, inter, single))
    if rows:
        predicted = components(fitted.models[fitted.selected], pd.DataFrame(rows))
        for (key, instance, count, inter, single), (_, p) in zip(keys, predicted.iterrows(), strict=True):
            estimate = StepEstimate(
                step_ms=float(p["step_ms"]),
                single_gpu_step_ms=float(p["step_ms"] - p["interconnect_stall_ms"] - p["network_stall_ms"]),
                interconnect_stall_ms=float(p["interconnect_stall_ms"]),
                network_stall_ms=float(p["network_stall_ms"]),
                source="predicted",
                inter_busbw_gbps=inter,
                precision=single.precision,
                basis=single.basis,
                scaled=single.scaled,
                warnings=single.warnings,
                calibrated=single.calibrated,
                calibrated_spread_pct=single.spread_pct,
                batch_outside=single.batch_outside,
            )
            measured = basis.measured
            if (
                measured is not None
                and measured["gpu"] == _canonical_gpu(instance.gpu)
                and measured["gpus_per_node"] == instance.gpu_count
                and measured["nodes"] == count
                and not single.scaled  # a measured step stands only for the precision it ran at
            ):
                estimate = StepEstimate(
                    step_ms=measured["step_ms"],
                    single_gpu_step_ms=basis.single_gpu_step_ms or estimate.single_gpu_step_ms,
                    interconnect_stall_ms=measured["interconnect_stall_ms"],
                    network_stall_ms=measured["network_stall_ms"],
                    source="measured",
                    inter_busbw_gbps=inter,
                    precision=single.precision,
                    basis=f"measured on {measured['gpu']} ({single.precision})",
                )
            out[key] = estimate
    return out


def _canonical_gpu(name: str) -> str:
    from ddlprof.models.gpus import get_gpu

    return get_gpu(name).gpu
