"""Workload facts from a DDP instance: the macro features the stall models learn from."""

from __future__ import annotations

from typing import Any


def _int_list(text: Any) -> list[int] | None:
    if isinstance(text, str) and text.strip():
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    return None


def _bucket_sizes(logging_data: dict[str, Any]) -> list[int] | None:
    # After the first iterations DDP rebuilds its buckets in gradient-ready order; prefer those.
    return _int_list(logging_data.get("rebuilt_bucket_sizes")) or _int_list(logging_data.get("bucket_sizes"))


def ddp_bucket_sizes(ddp: Any) -> list[int] | None:
    """DDP's gradient bucket sizes in bytes, in launch order."""
    return _bucket_sizes(ddp._get_ddp_logging_data())


def forward_precision(module: Any) -> str | None:
    """The math a training forward of ``module`` runs at, in ddlprof's names: autocast on the module's
    device gives ``amp-bf16`` / ``amp-fp16``; else 16-bit parameters give ``bf16`` / ``fp16``; else
    ``tf32`` where torch lets the module's main kind of layer use TF32 on CUDA (cuDNN convolutions by
    default, matmuls only when the job allows it), else ``fp32``. Read inside the forward, under the
    job's own autocast context."""
    import torch

    parameter = next(module.parameters(), None)
    if parameter is None:
        return None
    device = parameter.device.type
    if _autocast_enabled(torch, device):
        dtype = _autocast_dtype(torch, device)
        return {torch.bfloat16: "amp-bf16", torch.float16: "amp-fp16"}.get(dtype, f"amp-{dtype}")
    if parameter.dtype in (torch.bfloat16, torch.float16):
        return "bf16" if parameter.dtype == torch.bfloat16 else "fp16"
    if device != "cuda":
        return "fp32"
    convolutional = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())
    if convolutional:
        return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


def conv_layout(module: Any, inputs: Any) -> dict[str, Any]:
    """How a convolutional net's tensors are laid out, read at its first training forward: the
    number of 2-D convolutions, ``layout`` "channels_last" where the first one's weight or the first
    4-D input is in NHWC memory order (a convolution with either runs NHWC), else "nchw", and whether
    cuDNN's autotuner is on. Under AMP both are worth 1.7-2.4x on an H100 (BENCHMARKS.md, issue 14:
    the tuned sweep), and a plain script has neither. Empty for a model with no 2-D convolution."""
    import torch

    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        return {}
    nhwc = torch.channels_last
    image = _first_4d(inputs)
    # a tensor with 1x1 spatial dims or one channel (a grayscale stem's weight) is in both orders at
    # once and says nothing: the first weight that is in one order only speaks for the model
    weight = next(
        (c.weight for c in convs if c.weight.is_contiguous() != c.weight.is_contiguous(memory_format=nhwc)),
        None,
    )
    tensors = [t for t in (weight, image) if t is not None]
    channels_last = any(t.is_contiguous(memory_format=nhwc) and not t.is_contiguous() for t in tensors)
    return {
        "conv2d_layers": len(convs),
        "layout": "channels_last" if channels_last else "nchw",
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def _first_4d(value: Any, depth: int = 0) -> Any:
    """The first 4-D tensor in a forward's inputs (tensors, sequences, mappings), or None."""
    if getattr(value, "dim", None) is not None and callable(value.dim):
        return value if value.dim() == 4 else None
    if depth > 3:
        return None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else ()
    for item in items:
        found = _first_4d(item, depth + 1)
        if found is not None:
            return found
    return None


def _autocast_enabled(torch: Any, device: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device))  # torch >= 2.4
    except TypeError:
        return bool(torch.is_autocast_cpu_enabled() if device == "cpu" else torch.is_autocast_enabled())


def _autocast_dtype(torch: Any, device: str) -> Any:
    try:
        return torch.get_autocast_dtype(device)  # torch >= 2.4
    except AttributeError:
        return torch.get_autocast_cpu_dtype() if device == "cpu" else torch.get_autocast_gpu_dtype()


def ddp_facts(ddp: Any) -> dict[str, Any]:
    module = ddp.module
    params = list(module.parameters())
    grads = [p for p in params if p.requires_grad]
    layers = sum(1 for m in module.modules() if next(m.parameters(recurse=False), None) is not None)
    facts: dict[str, Any] = {
        "module": type(module).__name__,
        "num_layers": layers,
        "num_grad_tensors": len(grads),
        "num_params": sum(p.numel() for p in params),
        "grad_bytes": sum(p.numel() * p.element_size() for p in grads),
    }
    logging_data = ddp._get_ddp_logging_data()
    sizes = _bucket_sizes(logging_data)
    facts.update(
        {
            "bucket_cap_bytes": logging_data.get("bucket_cap_bytes"),
            "bucket_sizes": sizes,
            "num_buckets": len(sizes) if sizes else None,
            "backend": logging_data.get("backend_name"),
            "parameter_dtype": logging_data.get("dtypes"),
            "find_unused_parameters": bool(logging_data.get("find_unused_parameters")),
            # what DDP found unused in the iterations so far (it searches only with the flag on)
            "unused_parameter_bytes": logging_data.get("unused_parameter_size"),
            "gradient_as_bucket_view": bool(logging_data.get("gradient_as_bucket_view")),
            "static_graph": bool(logging_data.get("static_graph")),
            "comm_hook": logging_data.get("comm_hook") or None,
        }
    )
    return facts
