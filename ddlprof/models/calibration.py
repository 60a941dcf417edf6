"""Calibrations: single-GPU step times measured by ``ddlprof calibrate`` on the user's own GPU, kept
in the local store (``ddlprof.runs.calibrations``), and the one lookup the predictions make.

Where ``ddlprof advise`` and ``ddlprof model predict`` need the single-GPU step of a model on a GPU
type, :func:`calibrated_step` comes first: a calibration of that GPU type, for the same model and
precision, wins over scaling a step measured on another GPU by roofline ratios. Its batch:

- the same batch per GPU: the measured median as it is;
- calibrations at two or more other batches: a straight line through the two nearest (the step
  time of a GPU that is kept busy grows linearly in the batch, as the dataset's batch 32 and 64
  show; the same rule ``ddlprof.models.predict`` uses between its measured batches);
- one other batch only: not used (a fixed per-step cost makes a proportional scaling wrong both
  ways); the prediction scales from the reference GPU and says which batch to calibrate.

Without a usable calibration, the steps ddlprof measured itself on that GPU type come next, by the
same rules (``data/measured_steps.json``, built by ``benchmarks/build_measured_steps.py`` from the
zoo sweeps): measured on our machine, not the user's, so they carry the measured spread between two
machines of one GPU type (``spread_pct``), where a user's own calibration carries none.

A GPU type with neither can use those of a GPU type with the same chip (:func:`same_chip_step`: H100
for H200), which ``ddlprof.models.predict`` scales by memory bandwidth alone.

No torch here: the predictions that read calibrations are offline commands.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ddlprof.errors import DdlprofError
from ddlprof.models import dataset
from ddlprof.models.gpus import get_gpu, resolve_precision, same_chip
from ddlprof.runs.calibrations import load_calibrations, record_calibration

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class Calibrated:
    """A single-GPU step from calibrations of this GPU type."""

    step_ms: float
    gpu: str
    model: str
    precision: str
    batch_per_gpu: int
    date: str
    how: str  # the calibrated batches used, and how
    batches: tuple[int, ...] = ()  # every batch measured at this precision
    shipped: str | None = None  # measured by ddlprof (the sweep's settings), not the user's calibration
    spread_pct: float = 0.0  # measured spread between machines of the GPU type (shipped steps only)

    @property
    def named_precision(self) -> str:
        """The precision as advise and model predict name it: calibrate and the zoo sweep run 16-bit as
        autocast, stored as fp16/bf16, which is amp-fp16/amp-bf16."""
        return f"amp-{self.precision}" if self.precision in ("fp16", "bf16") else self.precision

    @property
    def description(self) -> str:
        if self.shipped:
            return f"measured by ddlprof on {self.gpu} on {self.date} ({self.shipped}): {self.how}"
        return f"calibrated on this GPU type ({self.gpu}) on {self.date} (ddlprof calibrate): {self.how}"


@functools.cache
def shipped_table() -> dict[str, Any]:
    """``data/measured_steps.json``: the steps ddlprof's zoo sweeps measured, and the machine spread."""
    text = resources.files("ddlprof.models").joinpath("data/measured_steps.json").read_text(encoding="utf-8")
    return json.loads(text)


def _shipped_rows(gpu: str, model: str) -> list[dict[str, Any]]:
    return [dict(r, steps_ms=[]) for r in shipped_table()["rows"] if r["gpu"] == gpu and r["model"] == model]


def _settings(row: dict[str, Any]) -> str:
    layout = "channels_last" if row.get("channels_last") else "NCHW"
    tuner = "on" if row.get("cudnn_benchmark") else "off"
    return f"zoo sweep, {row.get('device_name')}, torch {row.get('torch')}, {layout}, cudnn.benchmark {tuner}"


def model_key(name: str) -> str:
    """The name a calibration is stored and looked up under: the dataset's name for its models."""
    return dataset.lookup_model(name) or name.strip()


def default_precision(model: str) -> str:
    """The precision label of fp32 training under PyTorch's defaults, as advise assumes it: the
    dataset's per model (tf32 where convolutions dominate), fp32 for other models."""
    known = dataset.lookup_model(model)
    if known is not None:
        return str(dataset.model_rows(known)["precision"].iloc[0])
    return "fp32"


def amp_precision(device_name: str | None, bf16_supported: bool = True) -> str:
    """What ``--precision amp`` (advise's default) autocasts to on a device: bf16 where the GPU has
    BF16 tensor cores, else fp16, by the specs table (by ``bf16_supported`` for a GPU not in it); bf16
    on the CPU (``device_name`` None). ``ddlprof calibrate`` measures and stores that, so a default
    calibration is the step a default ``advise`` looks up."""
    if device_name is None:
        return "bf16"
    try:
        return resolve_precision("amp", get_gpu(device_name)).removeprefix("amp-")
    except DdlprofError:
        return "bf16" if bf16_supported else "fp16"


def gpu_type(device_name: str) -> str:
    """The specs table's name of a device (``torch.cuda.get_device_name()``); a CPU, or a GPU the
    table does not know, is a one-line error: only a GPU type advise prices can get a calibration."""
    if not device_name or device_name.strip().lower().startswith("cpu"):
        raise DdlprofError(
            "a CPU is not a GPU type advise prices: the measurement is shown, not stored "
            "(run ddlprof calibrate on the GPU you want to rent)"
        )
    try:
        return get_gpu(device_name).gpu
    except DdlprofError as exc:
        raise DdlprofError(f"{exc}; pass --gpu NAME to store it as that GPU type") from None


def store_calibration(result: dict[str, Any], gpu: str | None = None) -> dict[str, Any]:
    """Store a measurement (``ddlprof.models.benchmark.calibrate``'s result, or any dict with its
    keys) as a calibration of ``gpu`` (default: its device name), replacing an older one of the same
    GPU type, model, precision and batch. Returns the stored row."""
    precision = str(result["precision"])
    if precision not in PRECISIONS:
        raise DdlprofError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    batch = int(result["batch_per_gpu"])
    step_ms = float(result["step_ms"])
    if batch < 1 or not step_ms > 0:
        raise DdlprofError(f"a calibration needs a batch >= 1 and a positive step, got {batch}, {step_ms:g}")
    row = {
        **result,
        "gpu": gpu_type(gpu or str(result.get("device_name") or "")),
        "model": model_key(str(result["model"])),
        "precision": precision,
        "batch_per_gpu": batch,
        "step_ms": step_ms,
    }
    record_calibration(row)
    return row


def calibrated_step(model: str, gpu: str, batch: int, precision: str | None = None) -> Calibrated | None:
    """The single-GPU step of ``model`` on GPU type ``gpu`` at ``batch`` from its calibrations, else
    from ddlprof's own measurements of that GPU type, or None when there is none to use (see the
    module's rules). ``precision`` None: the model's default."""
    name, spec = model_key(model), get_gpu(gpu)
    if precision is not None and precision.startswith("amp"):  # calibrate stores autocast as fp16/bf16
        precision = resolve_precision(precision, spec).removeprefix("amp-")
    chosen = precision or default_precision(name)
    own = [r for r in load_calibrations(spec.gpu, name) if r["precision"] == chosen]
    found = _step(own, batch, spec.gpu, name, chosen)
    if found is not None:
        return found
    shipped = [r for r in _shipped_rows(spec.gpu, name) if r["precision"] == chosen]
    found = _step(shipped, batch, spec.gpu, name, chosen)
    if found is None:
        return None
    spread = float(shipped_table()["machine_spread_pct"])
    return dataclasses.replace(found, shipped=_settings(shipped[0]), spread_pct=spread)


def same_chip_step(model: str, gpu: str, batch: int, precision: str | None = None) -> Calibrated | None:
    """A step of ``model`` at ``batch`` and ``precision`` measured on another GPU type with the same
    chip as ``gpu`` (``ddlprof.models.gpus.same_chip``: only memory differs), by the rules of
    :func:`calibrated_step`, or None. For a GPU type with no step of its own, it is a closer basis than
    a step of another chip or precision: only the memory-bound part needs scaling."""
    for other in same_chip(gpu):
        found = calibrated_step(model, other, batch, precision)
        if found is not None:
            return found
    return None


def _step(rows: list[dict[str, Any]], batch: int, gpu: str, name: str, chosen: str) -> Calibrated | None:
    """The step at ``batch`` from measured ``rows`` of one GPU type, model and precision."""
    if not rows:
        return None
    by_batch: dict[int, dict[str, Any]] = {}
    for row in rows:  # newest first: the first of a batch is kept
        by_batch.setdefault(int(row["batch_per_gpu"]), row)
    points = sorted(by_batch)
    if batch in by_batch:
        row = by_batch[batch]
        how = (
            f"median {row['step_ms']:.3f} ms of {len(row['steps_ms']) or row.get('timed_steps') or '?'} "
            f"steps at batch {batch}, "
            f"{chosen}, {row.get('device_name') or gpu}, torch {row.get('torch') or '?'}"
        )
        return Calibrated(
            float(row["step_ms"]), gpu, name, chosen, batch, str(row["date"]), how, tuple(points)
        )
    if len(by_batch) < 2:
        return None
    below, above = [b for b in points if b < batch], [b for b in points if b > batch]
    if below and above:
        b0, b1, way = below[-1], above[0], "linear between"
    elif above:
        b0, b1, way = points[0], points[1], "extrapolated linearly from"
    else:
        b0, b1, way = points[-2], points[-1], "extrapolated linearly from"
    t0, t1 = float(by_batch[b0]["step_ms"]), float(by_batch[b1]["step_ms"])
    slope = max(0.0, (t1 - t0) / (b1 - b0))
    step = max(t0 + slope * (batch - b0), 1e-3)
    date = max(str(by_batch[b0]["date"]), str(by_batch[b1]["date"]))
    how = f"{way} the steps measured at batch {b0} ({t0:.3f} ms) and {b1} ({t1:.3f} ms), {chosen}"
    return Calibrated(step, gpu, name, chosen, batch, date, how, tuple(points))
