"""DNN macro features, computed in seconds from shapes alone: no weights, no GPU, no training run.

The stall models learn communication cost from these (Sharma et al. model communication stalls
from the number of layers and gradients), and the advisor checks GPU fit with ``memory_bytes``. The
same names are measured from live DDP jobs by ``ddlprof.collectors.workload``, so a prediction made
from a model name and a measurement of a real run can be compared key by key.

How: the model is built on the meta device (``ddlprof.models.zoo``), its parameters are swapped for
fake tensors (``FakeTensorMode``: meta tensors that libraries such as transformers recognise as
"tracing", so they skip their data-dependent checks), and one forward and backward pass of a sample
batch runs under ``FlopCounterMode`` with a saved-tensors hook and a gradient-ready hook on every
parameter. Where that pass cannot run on fake tensors, it runs on the CPU with a small batch, and the
result says so in ``note``.

It needs the torch of the environment (ddlprof never installs one): callers check with
``ddlprof.errors.require_torch`` before they import this module, so that a missing torch is one line.
Names of torchvision and transformers models need ``ddlprof[models]`` (``ddlprof.models.zoo``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from ddlprof.errors import DdlprofError
from ddlprof.models.zoo import DEFAULT_SEQ_LEN, InputSpec, ResolvedModel, infer_input, resolve

MIB = 1024 * 1024
DEFAULT_BUCKET_CAP_MB = 25.0
DEFAULT_FIRST_BUCKET_BYTES = 1024 * 1024  # torch.distributed._DEFAULT_FIRST_BUCKET_BYTES
CPU_FALLBACK_BATCH = 2

# Optimizer state per gradient byte: SGD with momentum keeps one buffer, Adam/AdamW two (exp_avg,
# exp_avg_sq), plain SGD none.
OPTIMIZER_STATE = {"sgd": 1, "adam": 2, "adamw": 2, "none": 0}

FEATURE_KEYS = (
    "model",
    "source",
    "module",
    "device",
    "input",
    "dtype",
    "batch_per_gpu",
    "num_layers",
    "num_grad_tensors",
    "num_params",
    "grad_bytes",
    "bucket_cap_mb",
    "first_bucket_mb",
    "num_buckets",
    "bucket_bytes",
    "bucket_tensors",
    "bucket_order",
    "flops_per_sample",
    "memory_bytes",
    "optimizer",
    "torch",
    "reasons",
    "elapsed_s",
)


def macro_features(
    model_or_name: str | nn.Module,
    batch_per_gpu: int = 32,
    bucket_cap_mb: float | None = None,
    first_bucket_mb: float | None = None,
    dtype: torch.dtype = torch.float32,
    optimizer: str = "sgd",
    seq_len: int = DEFAULT_SEQ_LEN,
) -> dict[str, Any]:
    """The macro features of a model (a zoo name, ``FILE.py:FACTORY``, or an ``nn.Module``).

    ``bucket_cap_mb`` and ``first_bucket_mb`` mean what DDP's arguments mean in the installed torch:
    None is DDP's default (25 MiB buckets after a 1 MiB first bucket); in torch 2.13 an explicit
    ``bucket_cap_mb`` also caps the first bucket at that size (DDP only shrinks the first bucket when
    ``bucket_cap_mb`` is left out); ``first_bucket_mb`` overrides the first bucket's cap. Parameters
    are cast to ``dtype`` (float32, bfloat16, ...); ``optimizer`` (sgd, adam, adamw, none) sets the
    optimizer state in ``memory_bytes``. A value that could not be measured is None, with the reason
    in ``reasons``. The keys are ``FEATURE_KEYS``, plus ``note`` when something fell back:

    - model, source (library and version, config, "no weights"), module (class), device (meta, or cpu
      where the sample pass fell back), input (kind and shape of one sample), dtype, batch_per_gpu
    - num_layers (modules holding parameters directly, as the collectors count them), num_grad_tensors,
      num_params (shared parameters once), grad_bytes
    - bucket_cap_mb, first_bucket_mb (MiB), num_buckets, bucket_bytes and bucket_tensors (per bucket, in
      all-reduce order), bucket_order (see ``ddp_buckets``)
    - flops_per_sample: forward + backward FLOPs of one sample, 2 per multiply-add
    - memory_bytes: weights (and buffers), gradients, ddp_buckets, optimizer_state, activations, total
    - optimizer, torch (version), reasons, elapsed_s
    """
    if batch_per_gpu < 1:
        raise DdlprofError("the batch per GPU must be at least 1")
    if optimizer not in OPTIMIZER_STATE:
        raise DdlprofError(f"unknown optimizer '{optimizer}'; use one of {', '.join(OPTIMIZER_STATE)}")
    if not dtype.is_floating_point:
        raise DdlprofError(f"dtype {dtype} is not a floating-point type")
    start = time.perf_counter()
    resolved = _resolve(model_or_name, seq_len)
    module = resolved.module
    if dtype != torch.float32:
        module.to(dtype)
    notes = [resolved.note] if resolved.note else []
    reasons: dict[str, str] = {}

    params, expect_sparse = ddp_parameters(module)
    all_params = list(module.parameters())
    grad_bytes = sum(_nbytes(p) for p in params)
    state_bytes = sum(_nbytes(p) for p in all_params) + sum(_nbytes(b) for b in module.buffers())
    static = {
        "num_layers": sum(1 for m in module.modules() if next(m.parameters(recurse=False), None) is not None),
        "num_grad_tensors": len(params),
        "num_params": sum(p.numel() for p in all_params),
        "grad_bytes": grad_bytes,
    }

    measured = _measure(resolved, batch_per_gpu, dtype, notes, reasons)
    cap, first = bucket_caps(bucket_cap_mb, first_bucket_mb)
    buckets = ddp_buckets(params, expect_sparse, measured.get("ready_order"), cap, first)
    if buckets["reason"]:
        reasons["bucket_order"] = buckets["reason"]

    activations = measured.get("activation_bytes")
    memory = {
        "weights": state_bytes,
        "gradients": grad_bytes,
        # DDP's reducer keeps the gradients again in flat bucket buffers (unless
        # gradient_as_bucket_view=True makes the gradients views into them).
        "ddp_buckets": grad_bytes,
        "optimizer_state": OPTIMIZER_STATE[optimizer] * grad_bytes,
        "activations": activations,
    }
    memory["total"] = None if activations is None else sum(memory.values())
    if activations is None:
        reasons["memory_bytes.total"] = "activations were not measured"
    result: dict[str, Any] = {
        "model": resolved.name,
        "source": resolved.source,
        "module": type(module).__name__,
        "device": measured.get("device", resolved.device),
        "input": resolved.input.describe() if resolved.input else None,
        "dtype": str(dtype).removeprefix("torch."),
        "batch_per_gpu": batch_per_gpu,
        **static,
        "bucket_cap_mb": cap / MIB,
        "first_bucket_mb": first / MIB,
        "num_buckets": len(buckets["bytes"]),
        "bucket_bytes": buckets["bytes"],
        "bucket_tensors": [len(b) for b in buckets["indices"]],
        "bucket_order": buckets["order"],
        "flops_per_sample": measured.get("flops_per_sample"),
        "memory_bytes": memory,
        "optimizer": optimizer,
        "torch": torch.__version__,
        "reasons": reasons,
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    if notes:
        result["note"] = "; ".join(notes)
    return result


def _resolve(model_or_name: str | nn.Module, seq_len: int) -> ResolvedModel:
    if isinstance(model_or_name, str):
        return resolve(model_or_name, seq_len)
    if not isinstance(model_or_name, nn.Module):
        raise DdlprofError(f"expected a model name or a torch.nn.Module, got {type(model_or_name).__name__}")
    module = model_or_name
    # A copy whose parameters and buffers are meta tensors: the caller's module is never touched,
    # and no weights are copied.
    memo: dict[int, Any] = {id(t): _meta_like(t) for t in [*module.parameters(), *module.buffers()]}
    try:
        meta = copy.deepcopy(module, memo)
    except Exception as exc:
        raise DdlprofError(f"cannot copy {type(module).__name__} to the meta device: {exc}") from exc
    return ResolvedModel(
        name=type(module).__name__,
        module=meta,
        source=f"nn.Module passed in ({type(module).__module__}.{type(module).__name__})",
        input=infer_input(meta, seq_len),
        device="meta",
    )


def _meta_like(tensor: torch.Tensor) -> torch.Tensor:
    meta = torch.empty_like(tensor, device="meta")
    return nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def ddp_parameters(module: nn.Module) -> tuple[list[nn.Parameter], list[bool]]:
    """The parameters DDP reduces, in DDP's order, and which of them get sparse gradients.

    As ``DistributedDataParallel._build_params_for_reducer``: modules in ``named_modules`` order,
    their own parameters that require gradients, shared ones once; an ``Embedding(sparse=True)``
    expects a sparse gradient (and DDP gives it a bucket of its own).
    """
    seen: set[int] = set()
    params: list[nn.Parameter] = []
    sparse: list[bool] = []
    for layer in module.modules():
        for param in layer.parameters(recurse=False):
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                params.append(param)
                sparse.append(isinstance(layer, nn.Embedding | nn.EmbeddingBag) and bool(layer.sparse))
    return params, sparse


def bucket_caps(bucket_cap_mb: float | None, first_bucket_mb: float | None) -> tuple[int, int]:
    """(bucket cap, first bucket cap) in bytes, as the installed DDP derives them from its arguments.

    Asks DDP's own ``_BucketCapacityConfig`` where the installed torch has it (2.13 does); without
    it, the 1 MiB first bucket that DDP's reducer used to rebuild with whatever ``bucket_cap_mb`` was.
    """
    try:
        from torch.nn.parallel.distributed import _BucketCapacityConfig

        config = _BucketCapacityConfig.create(bucket_cap_mb, None, False)
        cap, first = int(config.bucket_bytes_cap), int(config.first_bucket_bytes_cap)
    except (ImportError, AttributeError, TypeError):
        cap = int((DEFAULT_BUCKET_CAP_MB if bucket_cap_mb is None else bucket_cap_mb) * MIB)
        first = DEFAULT_FIRST_BUCKET_BYTES
    if first_bucket_mb is not None:
        first = int(first_bucket_mb * MIB)
    if cap <= 0 or first <= 0:
        raise DdlprofError("bucket sizes must be positive")
    return cap, first


NO_GRADIENTS = "no parameter requires a gradient: nothing for DDP to all-reduce (DDP refuses such a module)"


def ddp_buckets(
    params: Sequence[torch.Tensor],
    expect_sparse: Sequence[bool],
    ready_order: Sequence[int] | None,
    cap: int,
    first: int,
) -> dict[str, Any]:
    """DDP's gradient buckets, in the order they are all-reduced, with ``bucket_bytes`` per bucket.

    DDP (``find_unused_parameters=False``, the default) starts with one bucket holding everything,
    and after the first iteration rebuilds its buckets from the order in which gradients became
    ready: a first bucket of ``first`` bytes, then ``cap`` bytes each; a bucket closes once it
    reaches its cap, so it can exceed it by one tensor. Gradients of another dtype or device go to
    buckets of their own. That rebuilt assignment, which every later iteration uses, is what this
    returns (``order`` "gradient_ready"), computed by DDP's own assignment function
    (``torch.distributed._compute_bucket_assignment_by_size``) on the measured ready order.

    Without a ready order (the sample pass failed), the reverse parameter order stands in for it
    (``order`` "reverse_parameter"). When some parameters got no gradient, the job needs
    ``find_unused_parameters=True``, under which DDP never rebuilds: then this is DDP's initial
    assignment over the parameters in definition order, reversed (``order`` "parameter").
    """
    n = len(params)
    if n == 0:  # DDP itself refuses such a module; its assignment function asserts on no tensors
        return {"indices": [], "bytes": [], "order": "none", "reason": NO_GRADIENTS}
    limits = [first, cap]
    reason = None
    if ready_order is not None and sorted(ready_order) == list(range(n)):
        order, tensor_indices = "gradient_ready", list(ready_order)
    elif ready_order is not None:
        missing = n - len(set(ready_order))
        order, tensor_indices = "parameter", None
        reason = (
            f"{missing} parameter(s) got no gradient in the sample pass, so the job needs "
            "find_unused_parameters=True, under which DDP keeps its initial buckets"
        )
    else:
        order, tensor_indices = "reverse_parameter", list(range(n))[::-1]
        reason = "gradient-ready order not measured; the reverse parameter order stands in for it"
    if tensor_indices is None:
        indices = _assign(list(params), limits, list(expect_sparse), [])[::-1]
    else:
        indices = _assign([params[i] for i in tensor_indices], limits, list(expect_sparse), tensor_indices)
    return {
        "indices": indices,
        "bytes": [sum(_nbytes(params[i]) for i in bucket) for bucket in indices],
        "order": order,
        "reason": reason,
    }


def _assign(
    tensors: list[torch.Tensor], limits: list[int], expect_sparse: list[bool], tensor_indices: list[int]
) -> list[list[int]]:
    """DDP's ``_compute_bucket_assignment_by_size`` (C++); the Python copy below where torch was built
    without distributed support."""
    import torch.distributed as dist

    if dist.is_available():
        indices, _ = dist._compute_bucket_assignment_by_size(tensors, limits, expect_sparse, tensor_indices)
        return [list(bucket) for bucket in indices]
    return _assign_python(tensors, limits, expect_sparse, tensor_indices)


def _assign_python(
    tensors: list[torch.Tensor], limits: list[int], expect_sparse: list[bool], tensor_indices: list[int]
) -> list[list[int]]:
    """A copy of ``compute_bucket_assignment_by_size`` in torch/csrc/distributed/c10d/reducer.cpp."""
    result: list[list[int]] = []
    open_buckets: dict[tuple[torch.dtype, str], tuple[list[int], int]] = {}
    limit_at: dict[tuple[torch.dtype, str], int] = {}
    for position, tensor in enumerate(tensors):
        index = tensor_indices[position] if tensor_indices else position
        if expect_sparse and expect_sparse[index]:
            result.append([index])
            continue
        key = (tensor.dtype, str(tensor.device))
        members, size = open_buckets.get(key, ([], 0))
        members.append(index)
        size += _nbytes(tensor)
        level = limit_at.setdefault(key, 0)
        if size >= limits[level]:
            result.append(members)
            open_buckets.pop(key, None)
            limit_at[key] = min(level + 1, len(limits) - 1)
        else:
            open_buckets[key] = (members, size)
    result += [members for members, _ in open_buckets.values()]
    if not tensor_indices:
        result.sort(key=min)
    return result


def sum_outputs(output: Any) -> torch.Tensor:
    """One scalar to call backward on: the sum of every floating output that needs a gradient
    (logits, hidden states, a transformers ``ModelOutput``'s fields, tuples and dicts of those)."""
    found: list[torch.Tensor] = []

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.requires_grad and value.is_floating_point():
                found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(output)
    if not found:
        raise DdlprofError("the model's output has no floating-point tensor that needs a gradient")
    total = found[0].sum()
    for tensor in found[1:]:
        total = total + tensor.sum()
    return total


def _measure(
    resolved: ResolvedModel, batch: int, dtype: torch.dtype, notes: list[str], reasons: dict[str, str]
) -> dict[str, Any]:
    """FLOPs, activation bytes and the gradient-ready order from one forward and backward pass:
    on fake tensors, else on the CPU with a small batch; {} with reasons when neither works."""
    spec = resolved.input
    if spec is None:
        why = "the model's input could not be guessed; define sample_input(batch_size) beside the factory"
        reasons.update(flops_per_sample=why, **{"memory_bytes.activations": why})
        return {}
    try:
        return _fake_pass(resolved.module, spec, batch, dtype)
    except Exception as exc:  # the model's own code: anything may fail on shapes-only tensors
        fake_error = _one_line(exc)
    if resolved.build is None:
        why = f"the sample pass failed on fake tensors ({fake_error})"
        reasons.update(flops_per_sample=why, **{"memory_bytes.activations": why})
        return {}
    small = min(batch, CPU_FALLBACK_BATCH)
    try:
        module = resolved.build().to(dtype)
        measured = _pass(module, spec, small, dtype, "cpu")
    except Exception as exc:
        why = f"the sample pass failed on fake tensors ({fake_error}) and on the CPU ({_one_line(exc)})"
        reasons.update(flops_per_sample=why, **{"memory_bytes.activations": why})
        return {}
    measured["activation_bytes"] = measured["activation_bytes"] * batch // small
    notes.append(
        f"measured on the CPU with batch {small} (activations scaled to {batch}): "
        f"fake tensors failed ({fake_error})"
    )
    return {**measured, "device": "cpu"}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _fake_pass(module: nn.Module, spec: InputSpec, batch: int, dtype: torch.dtype) -> dict[str, Any]:
    """Swap the module's parameters and buffers for fake tensors (in place: it is our own copy), then
    run the pass under that fake mode."""
    mode = FakeTensorMode(allow_non_fake_inputs=False)
    fakes: dict[int, torch.Tensor] = {}
    for layer in module.modules():
        for store in (layer._parameters, layer._buffers):
            for key, tensor in store.items():
                if tensor is None:
                    continue
                if id(tensor) not in fakes:
                    fake = mode.from_tensor(tensor)
                    fakes[id(tensor)] = (
                        nn.Parameter(fake, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else fake
                    )
                store[key] = fakes[id(tensor)]
    device = next((t.device for t in fakes.values()), torch.device("meta"))
    with mode:
        return {**_pass(module, spec, batch, dtype, device), "device": "meta"}


def _pass(
    module: nn.Module,
    spec: InputSpec,
    batch: int,
    dtype: torch.dtype,
    device: str | torch.device,
) -> dict[str, Any]:
    """One training forward and backward of a sample batch: FLOPs (FlopCounterMode counts 2 per
    multiply-add), bytes of tensors saved for backward (activations; parameters and buffers left
    out, storages counted once), and the order in which DDP's parameters' gradients became ready."""
    module.train()
    params, _ = ddp_parameters(module)
    param_storages = {_storage_key(t) for t in [*module.parameters(), *module.buffers()]}
    saved: dict[Any, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in param_storages:
            saved[key] = _storage_bytes(tensor)
        return tensor

    ready: list[int] = []
    hooks = [p.register_post_accumulate_grad_hook(partial(_ready, ready, i)) for i, p in enumerate(params)]
    try:
        args, kwargs = spec.batch(batch, device, dtype)
        with FlopCounterMode(display=False, custom_mapping=_FLOP_FIXES) as counter:
            with torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
                output = module(*args, **kwargs)
            sum_outputs(output).backward()
    finally:
        for hook in hooks:
            hook.remove()
        for param in module.parameters():
            param.grad = None
    return {
        "flops_per_sample": counter.get_total_flops() / batch,
        "activation_bytes": sum(saved.values()),
        "ready_order": ready,
    }


def _conv_backward_flop(
    grad_out_shape: list[int],
    x_shape: list[int],
    w_shape: list[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: int,
    output_mask: list[bool],
    **_: Any,
) -> int:
    """The input gradient and the weight gradient of a convolution each take the forward's
    multiply-adds. torch 2.13's own formula forgets the groups in the weight gradient, counting a
    depthwise convolution's backward as a dense one (MobileNetV2: 7x its true FLOPs); fixed upstream
    in pytorch/pytorch#183405."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


_FLOP_FIXES = {torch.ops.aten.convolution_backward: _conv_backward_flop}


def _ready(order: list[int], index: int, _param: torch.Tensor) -> None:
    order.append(index)


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _storage_key(tensor: torch.Tensor) -> Any:
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):
        return ("tensor", id(tensor))


def _storage_bytes(tensor: torch.Tensor) -> int:
    try:
        return tensor.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):
        return _nbytes(tensor)
