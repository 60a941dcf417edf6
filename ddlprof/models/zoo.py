"""Model names to ``nn.Module`` objects built on the meta device, and a sample batch for each.

The macro features (parameters, DDP buckets, FLOPs, activation memory) depend on shapes only, so the
models are built on PyTorch's meta device: no weights are allocated or downloaded, no GPU is needed,
and even a 600M-parameter model takes well under a second. Names resolve, in this order, to:

- every torchvision classification model (``torchvision.models.list_models(module=torchvision.models)``),
- a few transformers architectures with their published hyperparameters, written here as config
  objects because the Hugging Face hub is not reachable (and need not be) from where this runs,
- timm models, when timm is installed (``timm/NAME`` picks timm where torchvision has the same name),
- ``FILE.py:FACTORY``: a function taking no arguments that returns the user's own ``nn.Module``.

torchvision and transformers come with ``ddlprof[models]``, not with the core install: a name that
needs one of them, where it is missing, is the one-line error of ``ddlprof.errors.missing_extra``.
``FILE.py:FACTORY`` needs neither.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddlprof.errors import DdlprofError, missing_extra, require

DEFAULT_SEQ_LEN = 128
MAX_SEQ_LEN = 512
DEFAULT_IMAGE_SIZE = 224

_CUSTOM = re.compile(r"^(?P<path>.+\.py):(?P<factory>[A-Za-z_]\w*)$")

# The sizes of the "large" BERT-family checkpoints (bert-large, roberta-large, vit-large).
_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
# What roberta-base's config changes from RobertaConfig's defaults (which are BERT's).
_ROBERTA = {
    "vocab_size": 50265,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}

# name -> (transformers config class, the hub checkpoint whose config it reproduces, config overrides).
# Defaults of BertConfig, GPT2Config, DistilBertConfig and ViTConfig are those checkpoints already.
_HF_MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "bert-base": ("BertConfig", "bert-base-uncased", {}),
    "bert-large": ("BertConfig", "bert-large-uncased", _LARGE),
    "distilbert-base": ("DistilBertConfig", "distilbert-base-uncased", {}),
    "roberta-base": ("RobertaConfig", "roberta-base", _ROBERTA),
    "roberta-large": ("RobertaConfig", "roberta-large", {**_ROBERTA, **_LARGE}),
    "gpt2": ("GPT2Config", "gpt2", {}),
    "gpt2-medium": ("GPT2Config", "gpt2-medium", {"n_embd": 1024, "n_layer": 24, "n_head": 16}),
    "gpt2-large": ("GPT2Config", "gpt2-large", {"n_embd": 1280, "n_layer": 36, "n_head": 20}),
    "t5-small": (
        "T5Config",
        "t5-small",
        {"vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_heads": 8},
    ),
    "t5-base": (
        "T5Config",
        "t5-base",
        {"vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_heads": 12},
    ),
    "vit-base": ("ViTConfig", "google/vit-base-patch16-224", {}),
    "vit-large": ("ViTConfig", "google/vit-large-patch16-224", _LARGE),
}
_HF_ALIASES = {checkpoint.lower(): name for name, (_, checkpoint, _) in _HF_MODELS.items()} | {
    "distilbert-base-uncased": "distilbert-base",
    "vit-base-patch16-224": "vit-base",
    "google-t5/t5-small": "t5-small",
    "google-t5/t5-base": "t5-base",
}


@dataclass(frozen=True)
class InputSpec:
    """What one sample looks like, so a batch of any size can be made on any device.

    ``kind`` is image, tokens (token ids), seq2seq (token ids for encoder and decoder), vector,
    sequence (Conv1d input), volume (Conv3d input) or custom (the user's ``sample_input``).
    """

    kind: str
    shape: tuple[int, ...]
    names: tuple[str, ...] = ()  # keyword names of the inputs (transformers); positional when empty
    make: Callable[[int], Any] | None = field(default=None, compare=False)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "shape": list(self.shape),
            **({"names": list(self.names)} if self.names else {}),
        }

    def batch(
        self, batch_size: int, device: str | torch.device = "meta", dtype: torch.dtype = torch.float32
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for ``module(*args, **kwargs)``; zeros (values never matter)."""
        if self.make is not None:
            made = _to_device(self.make(batch_size), device, dtype)
            if isinstance(made, dict):
                return (), made
            return (tuple(made) if isinstance(made, list | tuple) else (made,)), {}
        if self.kind in ("tokens", "seq2seq"):
            ids = torch.zeros((batch_size, *self.shape), dtype=torch.long, device=device)
            return ((), {name: ids for name in self.names}) if self.names else ((ids,), {})
        data = torch.zeros((batch_size, *self.shape), dtype=dtype, device=device)
        return ((), {self.names[0]: data}) if self.names else ((data,), {})


@dataclass
class ResolvedModel:
    """A model built for feature computation, and where it came from (every number says its source)."""

    name: str
    module: nn.Module
    source: str
    input: InputSpec | None
    device: str
    note: str | None = None
    # Builds the same model again on the current default device: the CPU fallback for ops with no
    # meta kernel. None for modules handed in by the caller.
    build: Callable[[], nn.Module] | None = field(default=None, repr=False)


def _to_device(value: Any, device: str | torch.device, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
    if isinstance(value, dict):
        return {key: _to_device(item, device, dtype) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_device(item, device, dtype) for item in value)
    return value


_TORCHVISION_OPS: Any = None


def import_torchvision() -> Any:
    """``import torchvision``, also where its C++ ops cannot load.

    PyPI has no CPU build of torchvision: its wheel links against CUDA torch, so with a CPU torch the
    extension fails to load, and torchvision 0.28's ``_meta_registrations`` then raises
    "operator torchvision::nms does not exist" (it guards every other op). The classification models
    are plain Python and need none of those ops, so when that happens the two op schemas are declared
    (without kernels) and the import is retried. transformers imports torchvision too, so this runs
    before transformers is imported.
    """
    global _TORCHVISION_OPS
    try:
        import torchvision
    except ModuleNotFoundError as exc:
        if exc.name != "torchvision":
            raise
        raise missing_extra("torchvision", "models", "torchvision's models") from None
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or _TORCHVISION_OPS is not None:
            raise
        _TORCHVISION_OPS = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            _TORCHVISION_OPS.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        for half_imported in ("torchvision", "torchvision._meta_registrations"):
            sys.modules.pop(half_imported, None)
        import torchvision
    return torchvision


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _torchvision_names() -> list[str]:
    models = import_torchvision().models
    return list(models.list_models(module=models))


def _timm() -> Any:
    """timm, or None when it is not installed (it is optional)."""
    if importlib.util.find_spec("timm") is None:
        return None
    import_torchvision()
    import timm

    return timm


def known_names() -> list[str]:
    """Every name that resolves (file paths aside): torchvision, transformers, then timm."""
    names = [*(_torchvision_names() if _has("torchvision") else []), *_HF_MODELS]
    timm = _timm()
    if timm is not None:
        names += list(timm.list_models())
    return names


def resolve(name: str, seq_len: int = DEFAULT_SEQ_LEN) -> ResolvedModel:
    """The module for ``name``, built on the meta device; DdlprofError with suggestions when unknown."""
    if not 1 <= seq_len <= MAX_SEQ_LEN:
        raise DdlprofError(f"sequence length {seq_len} is out of range: use 1 to {MAX_SEQ_LEN}")
    custom = _CUSTOM.match(name)
    if custom:
        return _custom(Path(custom["path"]), custom["factory"])
    key = name.strip().lower()
    hf = _HF_ALIASES.get(key, key)
    if hf in _HF_MODELS:
        return _transformers(hf, seq_len)
    if key.startswith("timm/"):
        return _timm_model(name, key[len("timm/") :])
    if not _has("torchvision"):  # most names are torchvision's; timm needs torchvision too
        raise missing_extra("torchvision", "models", f"the model name {name!r}")
    if key in _torchvision_names():
        return _torchvision(key)
    timm = _timm()
    if timm is not None and key in timm.list_models():
        return _timm_model(name, key)
    raise DdlprofError(_unknown(name))


def _unknown(name: str) -> str:
    """One line: what is wrong, the closest names, and what else is accepted."""
    if ":" in name and not _CUSTOM.match(name):
        return f"'{name}' is not FILE.py:FACTORY (a .py file, a colon, and a function name)"
    names = known_names()
    by_lower = {known.lower(): known for known in names}
    close = [by_lower[n] for n in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (
        f"unknown model '{name}'; {hint}Use a torchvision classification model (resnet50, vit_b_16, ...), "
        f"{', '.join(_HF_MODELS)}, a timm model if timm is installed, or FILE.py:FACTORY"
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Constructors run on the CPU, but every parameter and buffer moves to the meta device as it is
    registered (the trick of accelerate's ``init_empty_weights``): for constructors that compute
    with tensors (torchvision's RegNet derives its widths with ``.tolist()``), without allocating
    the weights."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True) -> None:
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = (  # type: ignore[method-assign]
            register_parameter,
            register_buffer,
        )


def _build(build: Callable[[], nn.Module]) -> tuple[nn.Module, str, str | None]:
    """Build without weights: on the meta device, else with the parameters moved to meta as they are
    registered; where a constructor needs its parameters' values, on the CPU with a note."""
    try:
        with torch.device("meta"):
            return build(), "meta", None
    except Exception as exc:  # the constructor's own code: any error means "not on meta"
        reason = _one_line(exc)
    try:
        with _parameters_on_meta():
            module = build()
        if all(t.is_meta for t in [*module.parameters(), *module.buffers()]):
            return module, "meta", None
    except Exception:
        pass
    try:
        module = build()
    except Exception as exc:
        raise DdlprofError(
            f"building the model failed on the meta device ({reason}) and on the CPU ({_one_line(exc)})"
        ) from exc
    return module, "cpu", f"built on the CPU with real weights: the meta device failed ({reason})"


def _torchvision(name: str) -> ResolvedModel:
    torchvision = import_torchvision()

    def build() -> nn.Module:
        with warnings.catch_warnings():
            # inception_v3 and googlenet warn that their weight initialisation will change: no weights here.
            warnings.filterwarnings("ignore", "The default weight initialization", FutureWarning)
            return torchvision.models.get_model(name, weights=None)

    module, device, note = _build(build)
    return ResolvedModel(
        name=name,
        module=module,
        source=f"torchvision {torchvision.__version__} models.{name}, no weights",
        input=InputSpec("image", (3, *(_torchvision_image_size(name, module),) * 2)),
        device=device,
        note=note,
        build=build,
    )


def _torchvision_image_size(name: str, module: nn.Module) -> int:
    """The input side the model is built for (ViT fixes it), else the crop of its default weights
    (299 for inception_v3, 600 for efficientnet_b7), else 224."""
    fixed = getattr(module, "image_size", None)
    if isinstance(fixed, int):
        return fixed
    try:
        weights = import_torchvision().models.get_model_weights(name).DEFAULT
        crop = weights.transforms.keywords.get("crop_size", DEFAULT_IMAGE_SIZE)
    except (ValueError, AttributeError, KeyError):
        return DEFAULT_IMAGE_SIZE
    return int(crop[0] if isinstance(crop, list | tuple) else crop)


def _transformers(name: str, seq_len: int) -> ResolvedModel:
    if _has("torchvision"):
        import_torchvision()  # transformers imports it; see import_torchvision
    transformers = require("transformers", "models", f"the transformers architecture {name!r}")

    config_class, checkpoint, overrides = _HF_MODELS[name]
    # use_cache=False: training keeps no key/value cache, and it would only add outputs.
    config = getattr(transformers, config_class)(**overrides, use_cache=False)

    def build() -> nn.Module:
        return transformers.AutoModel.from_config(config)

    module, device, note = _build(build)
    spec = _transformers_input(module, seq_len)
    return ResolvedModel(
        name=name,
        module=module,
        source=f"transformers {transformers.__version__} {type(module).__name__}, {checkpoint} config, "
        "no weights",
        input=spec,
        device=device,
        note=note,
        build=build,
    )


def _transformers_input(module: nn.Module, seq_len: int) -> InputSpec:
    config = module.config  # type: ignore[attr-defined]
    main = getattr(module, "main_input_name", "input_ids")
    if main == "pixel_values":
        side = int(getattr(config, "image_size", DEFAULT_IMAGE_SIZE))
        return InputSpec("image", (int(getattr(config, "num_channels", 3)), side, side), names=(main,))
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if limit is not None and seq_len > limit:
        raise DdlprofError(f"sequence length {seq_len} is longer than the model's {limit} positions")
    if getattr(config, "is_encoder_decoder", False):
        return InputSpec("seq2seq", (seq_len,), names=(main, "decoder_input_ids"))
    return InputSpec("tokens", (seq_len,), names=(main,))


def _timm_model(name: str, key: str) -> ResolvedModel:
    timm = _timm()
    if timm is None:
        raise DdlprofError(f"'{name}' names a timm model, and timm is not installed (pip install timm)")
    if key not in timm.list_models():
        raise DdlprofError(_unknown(name))

    def build() -> nn.Module:
        return timm.create_model(key, pretrained=False)

    module, device, note = _build(build)
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None) or {}
    shape = tuple(int(s) for s in cfg.get("input_size", (3, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)))
    return ResolvedModel(
        name=key,
        module=module,
        source=f"timm {timm.__version__} {key}, no weights",
        input=InputSpec("image", shape),
        device=device,
        note=note,
        build=build,
    )


def _custom(path: Path, factory: str) -> ResolvedModel:
    """The user's own model: ``factory()`` from ``path``, and ``sample_input(batch_size)`` if defined."""
    if not path.is_file():
        raise DdlprofError(f"no such file: {path} (expected FILE.py:FACTORY)")
    spec = importlib.util.spec_from_file_location(f"ddlprof_custom_model_{abs(hash(path.resolve()))}", path)
    if spec is None or spec.loader is None:
        raise DdlprofError(f"cannot import {path} as a Python file")
    code = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # so the file can import its neighbours
    try:
        spec.loader.exec_module(code)
    except Exception as exc:
        raise DdlprofError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    build = getattr(code, factory, None)
    if not callable(build):
        functions = sorted(
            key
            for key, value in vars(code).items()
            if inspect.isfunction(value) and value.__module__ == code.__name__ and not key.startswith("_")
        )
        raise DdlprofError(f"{path} has no function {factory}; it defines: {', '.join(functions) or 'none'}")
    module, device, note = _build(build)
    if not isinstance(module, nn.Module):
        raise DdlprofError(f"{path}:{factory}() returned {type(module).__name__}, not a torch.nn.Module")
    sample = getattr(code, "sample_input", None)
    spec_in = InputSpec("custom", (), make=sample) if callable(sample) else infer_input(module)
    return ResolvedModel(
        name=f"{path}:{factory}",
        module=module,
        source=f"custom: {factory}() from {path}",
        input=spec_in,
        device=device,
        note=note,
        build=build,
    )


def infer_input(module: nn.Module, seq_len: int = DEFAULT_SEQ_LEN) -> InputSpec | None:
    """A guess at the input from the model itself: transformers models say what they take; otherwise
    the first layer with parameters (Conv2d: images, Linear: vectors, Embedding: token ids). None when
    there is nothing to go on; then FLOPs and activations are not measured (and the result says why)."""
    if hasattr(module, "config") and hasattr(module, "main_input_name"):
        return _transformers_input(module, seq_len)
    for layer in module.modules():
        if next(layer.parameters(recurse=False), None) is None:
            continue
        if isinstance(layer, nn.Conv2d):
            return InputSpec("image", (layer.in_channels, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE))
        if isinstance(layer, nn.Conv1d):
            return InputSpec("sequence", (layer.in_channels, 1024))
        if isinstance(layer, nn.Conv3d):
            return InputSpec("volume", (layer.in_channels, 16, 112, 112))
        if isinstance(layer, nn.Linear):
            return InputSpec("vector", (layer.in_features,))
        if isinstance(layer, nn.Embedding | nn.EmbeddingBag):
            return InputSpec("tokens", (seq_len,))
        return None
    return None
