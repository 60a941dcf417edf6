"""The standard benchmark of ``ddlprof calibrate``: real training steps of one model on the device
this process has (the first CUDA GPU, else the CPU), timed.

The model is built by the zoo (``ddlprof.models.zoo``: a torchvision or transformers name, a timm
model, or ``FILE.py:FACTORY``) with real, randomly initialised weights directly on the device; the
batch is synthetic (the zoo's sample input: zeros of the model's input shape, made on the device, so
no data loading is timed). A step is what the stall dataset's single-GPU step is: zero the
gradients, forward, a scalar loss (the mean of the output), backward, ``torch.optim.SGD`` with
momentum, then ``torch.cuda.synchronize()``. One process, no DDP. ``warmup`` steps run first and
are not timed (cuDNN autotuning, allocator growth); the result is the median of the timed steps.

Layout and cuDNN: by default the model runs as PyTorch leaves it (NCHW tensors, ``cudnn.benchmark``
off), as a plain training script does; :class:`Tuning` turns on channels_last (NHWC: the model and
every 4-D input) and ``cudnn.benchmark``, as tuned code such as NVIDIA's published examples does. Under
AMP the two can differ by a large factor on CNNs (BENCHMARKS.md, issue 14).

Precision: ``None`` runs PyTorch's defaults (TF32 convolutions, fp32 matmuls), labelled as advise
labels the model (``ddlprof.models.calibration.default_precision``); ``fp32`` turns TF32 off,
``tf32`` on for matmuls and convolutions; ``fp16`` and ``bf16`` run the forward pass under
``torch.autocast`` (AMP; no gradient scaler: it changes no kernel of the step worth timing).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ddlprof import __version__
from ddlprof.errors import DdlprofError
from ddlprof.models import zoo
from ddlprof.models.calibration import default_precision, model_key

Progress = Callable[[int, int], None]  # (steps done, steps in all)


@dataclass(frozen=True)
class Tuning:
    """What tuned training code sets beyond the precision (all off: a plain script's defaults)."""

    channels_last: bool = False
    cudnn_benchmark: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "memory_format": "channels_last" if self.channels_last else "contiguous (NCHW)",
            "cudnn_benchmark": self.cudnn_benchmark,
        }


PLAIN = Tuning()


def device() -> tuple[torch.device, str]:
    """The device to calibrate on and its name: the current CUDA GPU, else the CPU ("cpu")."""
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        return torch.device("cuda", index), torch.cuda.get_device_name(index)
    return torch.device("cpu"), "cpu"


def _loss(output: Any) -> torch.Tensor:
    """A scalar from any model output: the mean of its (first) floating-point tensor."""
    if isinstance(output, torch.Tensor):
        return output.float().mean()
    if isinstance(output, dict) or hasattr(output, "values"):
        values = list(output.values())
    elif isinstance(output, list | tuple):
        values = list(output)
    else:
        values = []
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.requires_grad:
            return value.float().mean()
        if isinstance(value, dict | list | tuple) or hasattr(value, "values"):
            with contextlib.suppress(DdlprofError):
                return _loss(value)
    raise DdlprofError("the model's output holds no floating-point tensor with a gradient: nothing to train")


@contextlib.contextmanager
def _precision_settings(precision: str | None, tuning: Tuning, where: torch.device) -> Iterator[None]:
    """Run the steps at ``precision`` with ``tuning``'s cuDNN setting; PyTorch's TF32 and cuDNN
    switches are global, so they are put back afterwards (a later ``None`` run must get PyTorch's
    defaults, not the last run's)."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision or "")
    if precision not in (None, "fp32", "tf32") and dtype is None:
        raise DdlprofError(f"unknown precision {precision!r}; use fp32, tf32, fp16 or bf16")
    backends = torch.backends
    saved = backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark
    try:
        if precision in ("fp32", "tf32"):
            backends.cuda.matmul.allow_tf32 = precision == "tf32"
            backends.cudnn.allow_tf32 = precision == "tf32"
        backends.cudnn.benchmark = tuning.cudnn_benchmark
        with torch.autocast(device_type=where.type, dtype=dtype) if dtype else contextlib.nullcontext():
            yield
    finally:
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark = saved


def _channels_last(value: Any) -> Any:
    """A 4-D floating-point tensor in NHWC memory order; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.dim() == 4 and value.is_floating_point():
        return value.contiguous(memory_format=torch.channels_last)
    return value


def _sync(where: torch.device) -> None:
    if where.type == "cuda":
        torch.cuda.synchronize(where)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free(where: torch.device) -> None:
    gc.collect()
    if where.type == "cuda":
        torch.cuda.empty_cache()


def _steps(
    resolved: zoo.ResolvedModel,
    batch: int,
    precision: str | None,
    where: torch.device,
    count: int,
    progress: Progress | None = None,
    total: int | None = None,
    tuning: Tuning = PLAIN,
) -> list[float]:
    """Build the model on ``where`` with real weights and time ``count`` training steps, in ms."""
    if resolved.build is None or resolved.input is None:
        raise DdlprofError(
            f"{resolved.name}: no sample input could be guessed; "
            "define sample_input(batch_size) in the model file"
        )
    torch.manual_seed(0)
    with torch.device(where):
        module = resolved.build()
    module = module.to(where).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-4, momentum=0.9)
    args, kwargs = resolved.input.batch(batch, device=where)
    if tuning.channels_last:
        module = module.to(memory_format=torch.channels_last)
        args = tuple(_channels_last(a) for a in args)
        kwargs = {k: _channels_last(v) for k, v in kwargs.items()}
    times = []
    try:
        with _precision_settings(precision, tuning, where):
            for i in range(count):
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss = _loss(module(*args, **kwargs))
                loss.backward()
                optimizer.step()
                _sync(where)
                times.append((time.perf_counter() - start) * 1e3)
                if progress is not None:
                    progress(i + 1, total or count)
    finally:
        del module, optimizer, args, kwargs
    return times


def fit_failure(
    resolved: zoo.ResolvedModel,
    batch: int,
    precision: str | None,
    where: torch.device,
    steps: int = 2,
    tolerate: bool = False,
    tuning: Tuning = PLAIN,
) -> str | None:
    """None when ``steps`` training steps of ``batch`` run (two by default: SGD's momentum buffers
    exist only after the first step), else why not: "out of memory", or with ``tolerate`` any
    RuntimeError in one line (huge batches also fail otherwise: 32-bit indexing, cuBLAS workspace).
    The memory is freed after the ``except`` has ended: while it runs, the exception's traceback
    holds the failed step's tensors (PyTorch FAQ, "my out of memory exception handler can't allocate
    memory")."""
    _free(where)
    failure = None
    try:
        _steps(resolved, batch, precision, where, steps, tuning=tuning)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
        if not (_is_oom(exc) or tolerate):
            raise
        failure = "out of memory" if _is_oom(exc) else zoo._one_line(exc)
    _free(where)
    return failure


def largest_fitting_batch(
    resolved: zoo.ResolvedModel,
    batch: int,
    precision: str | None,
    where: torch.device,
    tuning: Tuning = PLAIN,
) -> int:
    """The largest power of two below ``batch`` that runs training steps on ``where`` (0: none)."""
    trial = 1 << (max(batch - 1, 1).bit_length() - 1)
    while trial >= 1 and fit_failure(resolved, trial, precision, where, tuning=tuning) is not None:
        trial //= 2
    return trial


def calibrate(
    name: str,
    batch: int = 32,
    precision: str | None = None,
    steps: int = 30,
    warmup: int = 5,
    progress: Progress | None = None,
    tuning: Tuning = PLAIN,
) -> dict[str, Any]:
    """Time ``steps`` training steps of ``name`` at ``batch`` on this process's device (after
    ``warmup`` untimed ones). A batch that runs out of memory is a one-line error naming the largest
    power of two that fit."""
    if batch < 1 or steps < 1 or warmup < 0:
        raise DdlprofError("--batch-per-gpu and --steps must be at least 1, --warmup at least 0")
    where, device_name = device()
    resolved = zoo.resolve(name)
    label = precision or default_precision(resolved.name)
    _free(where)
    if where.type == "cuda":
        torch.cuda.reset_peak_memory_stats(where)
    times: list[float] = []
    try:
        times = _steps(resolved, batch, precision, where, warmup + steps, progress, tuning=tuning)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
        if not _is_oom(exc):
            raise DdlprofError(f"{resolved.name}: a training step failed: {zoo._one_line(exc)}") from None
    finally:
        _free(where)
    if not times:  # out of memory; searched here, after the except has let the failed step's tensors go
        fits = largest_fitting_batch(resolved, batch, precision, where, tuning)
        memory = (
            f" ({torch.cuda.get_device_properties(where).total_memory / 2**30:.1f} GiB)"
            if where.type == "cuda"
            else ""
        )
        hint = f"the largest power of two that fit: {fits}" if fits else "not even batch 1 fit"
        raise DdlprofError(
            f"{resolved.name}: batch {batch} does not fit in {device_name}'s memory{memory}; {hint} "
            "(pass --batch-per-gpu)"
        )
    timed = times[warmup:]
    median = statistics.median(timed)
    now = dt.datetime.now(dt.UTC)
    return {
        "model": model_key(resolved.name),
        "model_source": resolved.source,
        "input": resolved.input.describe() if resolved.input is not None else None,
        "device": str(where),
        "device_name": device_name,
        "precision": label,
        "precision_settings": precision or "PyTorch defaults (TF32 convolutions, fp32 matmuls)",
        **tuning.describe(),
        "batch_per_gpu": batch,
        "step_ms": median,
        "steps_ms": timed,
        "warmup_steps": warmup,
        "samples_per_s": batch * 1e3 / median,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(where) if where.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "ddlprof_version": __version__,
        "calibrated_unix": now.timestamp(),
        "date": now.date().isoformat(),
    }
