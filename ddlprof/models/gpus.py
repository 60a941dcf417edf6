"""GPU specs table and roofline-style scaling of single-GPU compute time between GPU types.

Why: the advisor must say what a step measured on one GPU type (say an H200) would take on
another (a T4, an A100, an L4) without running there. Cross-GPU prediction after Habitat (Yu et al.,
"Habitat: A Runtime-Based Computational Performance Predictor for Deep Neural Network Training",
USENIX ATC'21, ~12% average error) keeps the *measured* time and scales it by hardware ratios:
compute-bound work by the ratio of peak FLOP/s, memory-bound work by the ratio of memory bandwidth.
Habitat does this per kernel; here it is done for a step split into two parts, which is coarser.

The table (``data/gpu_specs.csv``) holds one row per GPU type as clouds sell it, with the NVIDIA
datasheet or whitepaper each number comes from (``source``, ``source_date``, ``notes``). Units:
memory in GB, bandwidth in GB/s (bytes), compute in dense TFLOP/s. NVIDIA datasheets print tensor
figures *with 2:4 sparsity* (marked ``*``); the table holds the dense half. ``K80`` is one GK210 die,
i.e. half a K80 board, because clouds expose each die as one GPU. A value no NVIDIA document gives
is left empty, never guessed.

This module does not import torch: offline commands must start fast.
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
import re
from dataclasses import dataclass
from importlib import resources

from ddlprof.errors import DdlprofError

#: Precision names accepted by :func:`scale_compute_ms`, and the table columns that give their peak,
#: first choice first. A GPU without the first column falls back to the next (noted in the result):
#: pre-Ampere GPUs have no TF32, so fp32 code runs on the CUDA cores there; V100/T4 have no BF16 and
#: K80 no fast FP16, so that math runs at no more than the fp32 rate.
#:
#: - ``"fp32"``: fp32 on the CUDA cores. PyTorch's default for matmuls since 1.12
#:   (``torch.backends.cuda.matmul.allow_tf32 = False``).
#: - ``"tf32"``: fp32 tensors on TF32 tensor cores (Ampere and later). What fp32 *convolutions* get by
#:   default (``torch.backends.cudnn.allow_tf32 = True``), and matmuls with ``allow_tf32 = True`` or
#:   ``torch.set_float32_matmul_precision("high")``. Use it for a CNN trained in fp32.
#: - ``"fp16"`` / ``"bf16"``: 16-bit math on the tensor cores: autocast (AMP) to that dtype, or a
#:   model cast to it. ``"amp-fp16"`` / ``"amp-bf16"`` (what a measured run records) are the same peaks.
#: - ``"amp"``: autocast to bf16 where the GPU has BF16 tensor cores (the table has ``bf16_tflops``:
#:   Ampere and later), else fp16 (V100, T4, P100); :func:`resolve_precision` says which.
PRECISION_COLUMNS: dict[str, tuple[str, ...]] = {
    "fp32": ("fp32_tflops",),
    "tf32": ("tf32_tflops", "fp32_tflops"),
    "fp16": ("fp16_tflops", "fp32_tflops"),
    "bf16": ("bf16_tflops", "fp32_tflops"),
    "amp-fp16": ("fp16_tflops", "fp32_tflops"),
    "amp-bf16": ("bf16_tflops", "fp32_tflops"),
}
#: What ``--precision`` accepts: the above and ``amp``.
PRECISIONS = ("amp", *PRECISION_COLUMNS)
#: The precision ``ddlprof advise`` and ``ddlprof model predict --gpu`` predict at unless told:
#: mixed precision is what most people train with.
DEFAULT_PRECISION = "amp"
#: Bytes of an activation in 16-bit math relative to fp32: bf16 and fp16 are 2 bytes, fp32 is 4.
#: Under AMP the weights, their gradients and the optimizer state stay fp32 (autocast casts copies),
#: so only the activations' share of the memory traffic halves (see :func:`scale_compute_ms`).
HALF_BYTES = 0.5

#: Share of the measured time taken to be compute-bound when the caller gives neither a split nor
#: the FLOPs and bytes to derive one. 0.5 is a deliberately uninformed prior, not a measurement:
#: profiles of DNN training find memory-bound work (normalisation, element-wise ops, optimizer
#: steps) taking anywhere from a small to a large share of the time (Ivanov et al., "Data Movement
#: Is All You Need", MLSys 2021; arXiv 2404.11788 reports non-GEMM ops at 11% to 74% of latency).
#: The result says when this default was used, so a report can flag the number as rougher.
DEFAULT_COMPUTE_FRACTION = 0.5

_NUMERIC = (
    "memory_gb",
    "memory_bandwidth_gbps",
    "fp32_tflops",
    "tf32_tflops",
    "fp16_tflops",
    "bf16_tflops",
    "sm_count",
    "boost_clock_mhz",
    "nvlink_gbps",
    "pcie_gen",
)
_INTEGER = ("sm_count", "pcie_gen")
_PREFIXES = ("nvidia", "tesla")


@dataclass(frozen=True)
class GpuSpec:
    """One row of the specs table; a number no source gives is ``None``."""

    gpu: str
    aliases: tuple[str, ...]
    memory_gb: float
    memory_bandwidth_gbps: float
    fp32_tflops: float
    tf32_tflops: float | None
    fp16_tflops: float | None
    bf16_tflops: float | None
    sm_count: int | None
    boost_clock_mhz: float | None
    nvlink_gbps: float | None
    pcie_gen: int | None
    source: str
    source_date: str
    notes: str

    def peak_tflops(self, precision: str) -> tuple[float, str]:
        """Dense peak TFLOP/s for a precision, and the column it came from (after any fallback)."""
        columns = PRECISION_COLUMNS[resolve_precision(precision, self)]
        for column in columns:
            value = getattr(self, column)
            if value is not None:
                return value, column
        raise DdlprofError(f"GPU specs table has no {columns[-1]} for {self.gpu}")  # table checks forbid it


def _check_precision(precision: str) -> str:
    p = str(precision).strip().lower()
    if p not in PRECISIONS:
        raise DdlprofError(f"unknown precision '{precision}'; use one of: {', '.join(PRECISIONS)}")
    return p


def resolve_precision(precision: str, spec: GpuSpec) -> str:
    """``precision`` checked and, for ``"amp"``, made concrete for one GPU: ``"amp-bf16"`` where the
    table gives the GPU a BF16 peak, else ``"amp-fp16"``. Any other name comes back unchanged."""
    p = _check_precision(precision)
    if p == "amp":
        return "amp-bf16" if spec.bf16_tflops is not None else "amp-fp16"
    return p


def is_half(precision: str) -> bool:
    """Whether a (resolved) precision keeps its activations in 16 bits."""
    return _check_precision(precision) in ("amp", "fp16", "bf16", "amp-fp16", "amp-bf16")


def _finite(value: object, what: str) -> float:
    """A finite float from an int, float or numpy scalar; anything else is the caller's mistake."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise DdlprofError(f"{what} must be a finite number, got {value!r}")
    return number


def _normalize(name: str) -> str:
    """Lower-case, no 'NVIDIA'/'Tesla' prefix, no separators: 'Tesla V100-SXM2-16GB' -> 'v100sxm216gb'."""
    tokens = [t for t in re.split(r"[^0-9a-z]+", name.lower()) if t]
    while tokens and tokens[0] in _PREFIXES:
        tokens.pop(0)
    return "".join(tokens)


def _parse_row(row: dict[str, str], line: int) -> GpuSpec:
    values: dict[str, float | int | None] = {}
    for column in _NUMERIC:
        text = (row.get(column) or "").strip()
        if not text:
            values[column] = None
            continue
        try:
            values[column] = int(text) if column in _INTEGER else float(text)
        except ValueError as exc:
            raise DdlprofError(f"GPU specs table line {line}: {column} is not a number: '{text}'") from exc
    name = (row.get("gpu") or "").strip()
    for required in ("memory_gb", "memory_bandwidth_gbps", "fp32_tflops"):
        if values[required] is None or values[required] <= 0:
            raise DdlprofError(
                f"GPU specs table line {line} ({name or '?'}): {required} must be a positive number"
            )
    source = (row.get("source") or "").strip()
    if not name or not source.startswith("https://"):
        raise DdlprofError(f"GPU specs table line {line}: every row needs a gpu name and a source URL")
    aliases = tuple(a.strip() for a in (row.get("aliases") or "").split(";") if a.strip())
    return GpuSpec(
        gpu=name,
        aliases=aliases,
        source=source,
        source_date=(row.get("source_date") or "").strip(),
        notes=(row.get("notes") or "").strip(),
        **values,  # type: ignore[arg-type]
    )


@functools.cache
def _table() -> tuple[dict[str, GpuSpec], dict[str, str], dict[str, str]]:
    """Specs by canonical name, plus lookup keys: exact lower-case names and normalized names."""
    text = resources.files("ddlprof.models").joinpath("data/gpu_specs.csv").read_text(encoding="utf-8")
    specs: dict[str, GpuSpec] = {}
    for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        spec = _parse_row(row, line)
        if spec.gpu in specs:
            raise DdlprofError(f"GPU specs table line {line}: {spec.gpu} appears twice")
        specs[spec.gpu] = spec

    exact: dict[str, str] = {}
    for spec in specs.values():
        for name in (spec.gpu, *spec.aliases):
            exact[name.lower()] = spec.gpu

    # Canonical names always win. An alias whose normalized form is shared with another GPU, or is a
    # bare prefix of another GPU's name (GCP's 'nvidia-tesla-a100' -> 'a100', which would also
    # catch an 80 GB A100), only matches exactly: a vague name must not pick one GPU silently.
    normalized = {_normalize(spec.gpu): spec.gpu for spec in specs.values()}
    if len(normalized) != len(specs):
        raise DdlprofError("GPU specs table: two gpu names normalize to the same key")
    from_aliases: dict[str, set[str]] = {}
    for spec in specs.values():
        for alias in spec.aliases:
            from_aliases.setdefault(_normalize(alias), set()).add(spec.gpu)
    for key, owners in from_aliases.items():
        if key in normalized:
            continue
        others = [k for k, g in normalized.items() if g not in owners and k.startswith(key)]
        if len(owners) == 1 and not others:
            normalized[key] = next(iter(owners))
    return specs, exact, normalized


def list_gpus() -> list[str]:
    """Canonical GPU names in table order (oldest first)."""
    return list(_table()[0])


def get_gpu(name: str, memory_gb: float | None = None) -> GpuSpec:
    """Look a GPU up by canonical name, NVML/nvidia-smi name, cloud name or alias, case-insensitively.

    'NVIDIA '/'Tesla ' prefixes and separators do not matter ('Tesla V100-SXM2-16GB',
    'v100 sxm2 16gb'). A vague name ('A100', 'V100') matches only when ``memory_gb`` (as clouds'
    instance descriptions give it) picks exactly one of the candidates.
    """
    specs, exact, normalized = _table()
    text = (name or "").strip()
    if text.lower() in exact:
        return specs[exact[text.lower()]]
    key = _normalize(text)
    if key in normalized:
        return specs[normalized[key]]
    candidates = [g for k, g in normalized.items() if key and k.startswith(key)]
    candidates = list(dict.fromkeys(candidates))
    if len(candidates) > 1 and memory_gb is not None:
        fits = [g for g in candidates if math.isclose(specs[g].memory_gb, memory_gb, rel_tol=0.1)]
        if len(fits) == 1:
            return specs[fits[0]]
    close = difflib.get_close_matches(key, list(normalized), n=4, cutoff=0.5)
    suggestions = candidates or list(dict.fromkeys(normalized[k] for k in close))
    hint = f"closest known: {', '.join(suggestions)}" if suggestions else f"known: {', '.join(specs)}"
    what = "ambiguous" if len(candidates) > 1 else "unknown"
    raise DdlprofError(f"{what} GPU type '{name}'; {hint} (pass one of these names)")


def same_chip(gpu: str) -> list[str]:
    """The other GPU types with the same chip as ``gpu`` in the same form: the same SM count, peak at
    every precision and NVLink (an SXM module, not a PCIe card of lower power), so that only memory
    (size, bandwidth) sets them apart: H100 and H200, A100-40GB and A100-80GB, V100-16GB and -32GB. A
    step measured on one of them is a better basis for another than any other GPU's."""
    spec = get_gpu(gpu)
    if spec.sm_count is None:
        return []
    peaks = ("fp32_tflops", "tf32_tflops", "fp16_tflops", "bf16_tflops", "sm_count", "nvlink_gbps")
    return [
        other.gpu
        for other in _table()[0].values()
        if other.gpu != spec.gpu and all(getattr(other, key) == getattr(spec, key) for key in peaks)
    ]


#: Written by ``benchmarks/fit_cross_gpu.py``: the exponents of the fitted cross-GPU scaling and
#: their leave-one-GPU-out error against published and measured 1-GPU training throughput.
CROSS_GPU_FIT_FILE = "data/cross_gpu_fit.json"


@functools.cache
def cross_gpu_fit() -> dict:
    """The shipped fit: ``compute_exponent``, ``memory_exponent``, how it was fitted and its error."""
    import json

    text = resources.files("ddlprof.models").joinpath(CROSS_GPU_FIT_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def roofline_compute_fraction(gpu: str, precision: str, flops: float, bytes_moved: float) -> dict[str, float]:
    """Share of a step's time that is compute-bound on ``gpu``, from the roofline model.

    With ideal times t_c = flops / peak and t_m = bytes / bandwidth, the compute share is
    t_c / (t_c + t_m) = I / (I + R), where I = flops / bytes is the arithmetic intensity and
    R = peak / bandwidth the GPU's ridge point (FLOP/byte): half at the ridge, towards 1 far above it.
    """
    flops, bytes_moved = _finite(flops, "FLOPs per step"), _finite(bytes_moved, "bytes moved per step")
    if flops <= 0 or bytes_moved <= 0:
        raise DdlprofError("a roofline split needs positive FLOPs and bytes moved per step")
    spec = get_gpu(gpu)
    peak, _ = spec.peak_tflops(precision)
    intensity = flops / bytes_moved
    ridge = peak * 1e12 / (spec.memory_bandwidth_gbps * 1e9)
    return {
        "compute_fraction": intensity / (intensity + ridge),
        "arithmetic_intensity": intensity,
        "ridge_point": ridge,
    }


def scale_compute_ms(
    step_ms: float,
    from_gpu: str,
    to_gpu: str,
    precision: str = "fp32",
    compute_fraction: float | None = None,
    *,
    from_precision: str | None = None,
    activation_share: float | None = None,
    flops_per_sample: float | None = None,
    batch: int | None = None,
    bytes_per_step: float | None = None,
    fixed_ms: float = 0.0,
    exponents: tuple[float, float] | None = None,
) -> dict:
    """Predict single-GPU compute time on ``to_gpu`` at ``precision`` from a time measured on
    ``from_gpu`` at ``from_precision`` (default: the same precision).

    ``step_ms`` is GPU compute time per step (the report's ``compute_ms``), not data or
    communication stalls, which other models scale. ``fixed_ms`` of it (launch or host overhead that
    no faster GPU removes) is carried over unchanged. The rest is split into a compute-bound share and
    a memory-bound share, each scaled from what the step ran on to what it would run on:

    - compute: by peak(``from_gpu``, ``from_precision``) / peak(``to_gpu``, ``precision``), in dense
      TFLOP/s (see :data:`PRECISION_COLUMNS`). A TF32 step predicted at AMP on the same GPU is thus
      credited with the tensor cores' higher 16-bit peak, and an AMP step predicted at fp32 loses it.
    - memory: by the ratio of memory bandwidth times the ratio of bytes moved. 16-bit activations
      are half the bytes of fp32 ones (:data:`HALF_BYTES`); weights, gradients and optimizer state stay
      fp32 under AMP, so only ``activation_share`` of the memory-bound bytes changes size (default 1:
      the memory-bound ops of a training step, normalisation and element-wise ops, move activations;
      callers that know the weights' share of the traffic pass it). The bytes factor of a precision is
      ``1 - activation_share * (1 - HALF_BYTES)`` for 16-bit math, 1 for fp32/tf32.

    Each ratio is raised to a fitted exponent (``exponents``: compute, memory; default the shipped fit,
    :func:`cross_gpu_fit`). Peaks overstate what a training step reaches, more so the higher they are
    (a V100's fp32 units are easier to keep busy than an H100's tensor cores), so the measured
    speed-ups between GPUs and precisions grow less than the ratios of peaks: fitted on the published
    and measured 1-GPU rows, both exponents are below 1. ``(1, 1)`` is the plain roofline scaling.

    ``"amp"`` is made concrete per GPU (:func:`resolve_precision`: bf16 where the GPU has it, else
    fp16), so the two sides may differ (amp-bf16 on an H200, amp-fp16 on a V100).

    The split, in order of preference: ``compute_fraction`` if given; else the roofline split on
    ``from_gpu`` at ``from_precision`` (:func:`roofline_compute_fraction`) from ``flops_per_sample``
    (forward + backward, as the workload features give it) times ``batch`` and an estimate of
    ``bytes_per_step`` moved to and from GPU memory, counted at fp32 (as
    ``ddlprof.models.memory.bytes_moved_per_step`` counts; scaled here by ``from_precision``'s bytes
    factor); else :data:`DEFAULT_COMPUTE_FRACTION`. The result names which was used, the ratios and
    peaks, and the table's source for each GPU, so a report can say where the number comes from. Same
    GPU and precision in, same time out; a GPU with more FLOP/s and bandwidth never predicts slower at
    the same precision.
    """
    step_ms = _finite(step_ms, "step time (ms)")
    fixed_ms = _finite(fixed_ms, "fixed_ms")
    if step_ms <= 0:
        raise DdlprofError(f"step time must be a positive number of milliseconds, got {step_ms!r}")
    if not 0 <= fixed_ms <= step_ms:
        raise DdlprofError(f"fixed_ms must be between 0 and the step time ({step_ms} ms), got {fixed_ms!r}")
    src, dst = get_gpu(from_gpu), get_gpu(to_gpu)
    p = resolve_precision(precision, dst)
    p_from = resolve_precision(precision if from_precision is None else from_precision, src)
    share = 1.0 if activation_share is None else _finite(activation_share, "activation_share")
    if not 0 <= share <= 1:
        raise DdlprofError(f"activation_share must be between 0 and 1, got {activation_share!r}")
    src_peak, src_column = src.peak_tflops(p_from)
    dst_peak, dst_column = dst.peak_tflops(p)
    notes: list[str] = []
    for spec, column, prec in ((src, src_column, p_from), (dst, dst_column, p)):
        if column != PRECISION_COLUMNS[prec][0]:
            notes.append(f"{spec.gpu} has no {PRECISION_COLUMNS[prec][0]}: used {column}")
    if p_from != p:
        notes.append(f"measured at {p_from}, predicted at {p}: peaks and activation bytes of each used")

    def bytes_factor(prec: str) -> float:
        return 1 - share * (1 - HALF_BYTES) if is_half(prec) else 1.0

    roofline_inputs = (flops_per_sample, batch, bytes_per_step)
    roofline: dict[str, float] = {}
    if compute_fraction is not None:
        fraction = _finite(compute_fraction, "compute_fraction")
        if not 0 <= fraction <= 1:
            raise DdlprofError(f"compute_fraction must be between 0 and 1, got {compute_fraction!r}")
        fraction_source = "given"
        if any(v is not None for v in roofline_inputs):
            notes.append("compute_fraction given: flops_per_sample/batch/bytes_per_step not used")
    elif any(v is not None for v in roofline_inputs):
        if any(v is None for v in roofline_inputs):
            raise DdlprofError("a roofline split needs flops_per_sample, batch and bytes_per_step together")
        samples = _finite(batch, "batch")
        if samples <= 0 or samples != int(samples):
            raise DdlprofError(f"batch must be a positive whole number of samples, got {batch!r}")
        flops = _finite(flops_per_sample, "flops_per_sample") * samples
        moved = _finite(bytes_per_step, "bytes_per_step") * bytes_factor(p_from)
        roofline = roofline_compute_fraction(src.gpu, p_from, flops, moved)
        fraction, fraction_source = roofline["compute_fraction"], "roofline"
    else:
        fraction, fraction_source = DEFAULT_COMPUTE_FRACTION, "default"
        notes.append(
            f"no workload split known: assumed {DEFAULT_COMPUTE_FRACTION:.0%} compute-bound; "
            "pass compute_fraction or flops_per_sample, batch and bytes_per_step for a better split"
        )

    if exponents is None:
        fit = cross_gpu_fit()
        exponents = (fit["compute_exponent"], fit["memory_exponent"])
    compute_exponent, memory_exponent = (_finite(e, "scaling exponent") for e in exponents)
    compute_ratio = src_peak / dst_peak
    bytes_ratio = bytes_factor(p) / bytes_factor(p_from)
    memory_ratio = src.memory_bandwidth_gbps / dst.memory_bandwidth_gbps * bytes_ratio
    scalable_ms = step_ms - fixed_ms
    compute_from = scalable_ms * fraction
    memory_from = scalable_ms - compute_from
    compute_to = compute_from * compute_ratio**compute_exponent
    memory_to = memory_from * memory_ratio**memory_exponent
    predicted = fixed_ms + compute_to + memory_to
    result = {
        "predicted_ms": predicted,
        "step_ms": step_ms,
        "speedup": step_ms / predicted,
        "from_gpu": src.gpu,
        "to_gpu": dst.gpu,
        "precision": p,
        "from_precision": p_from,
        "method": "roofline two-part scaling of measured time (after Habitat, USENIX ATC'21), ratios "
        "raised to exponents fitted on published and measured 1-GPU throughput",
        "compute_fraction": fraction,
        "compute_fraction_source": fraction_source,
        "fixed_ms": fixed_ms,
        "compute_ms_from": compute_from,
        "compute_ms_to": compute_to,
        "memory_ms_from": memory_from,
        "memory_ms_to": memory_to,
        "compute_ratio": compute_ratio,
        "memory_ratio": memory_ratio,
        "compute_exponent": compute_exponent,
        "memory_exponent": memory_exponent,
        "bytes_ratio": bytes_ratio,
        "activation_share": share,
        "from_peak_tflops": src_peak,
        "to_peak_tflops": dst_peak,
        "from_peak_column": src_column,
        "to_peak_column": dst_column,
        "from_memory_bandwidth_gbps": src.memory_bandwidth_gbps,
        "to_memory_bandwidth_gbps": dst.memory_bandwidth_gbps,
        "from_source": src.source,
        "to_source": dst.source,
        "notes": list(dict.fromkeys(notes)),
    }
    if roofline:
        result["arithmetic_intensity"] = roofline["arithmetic_intensity"]
        result["from_ridge_point"] = roofline["ridge_point"]
    return result
