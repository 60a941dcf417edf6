"""DNN macro features: published parameter counts, DDP's own bucket sizes, FLOPs, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
from conftest import EXAMPLE, ddlprof
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ddlprof.errors import DdlprofError
from ddlprof.models import zoo
from ddlprof.models.features import (
    FEATURE_KEYS,
    bucket_caps,
    ddp_buckets,
    ddp_parameters,
    macro_features,
    sum_outputs,
)


@pytest.fixture(scope="module")
def resnet50() -> tuple[dict, float]:
    """The features of resnet50 at the default batch, and how long they took (torchvision imported)."""
    zoo.import_torchvision()
    start = time.perf_counter()
    features = macro_features("resnet50")
    return features, time.perf_counter() - start


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet18", 11_689_512),
        ("vgg16", 138_357_544),
        # BertModel with its pooler (bert-base-uncased without the MLM/NSP heads); 108,891,648 without it.
        ("bert-base", 109_482_240),
        ("gpt2", 124_439_808),  # GPT2Model; the LM head is tied to the token embedding
        ("roberta-base", 124_645_632),
        ("t5-small", 60_506_624),  # T5Model, encoder and decoder share the embedding
    ],
)
def test_published_parameter_counts(name, params):
    resolved = zoo.resolve(name)
    assert all(p.is_meta for p in resolved.module.parameters()), "built with weights"
    assert sum(p.numel() for p in resolved.module.parameters()) == params


def test_resnet50_features(resnet50):
    features, elapsed = resnet50
    assert set(features) == set(FEATURE_KEYS), "no note: nothing fell back"
    assert features["num_params"] == 25_557_032
    assert features["num_grad_tensors"] == 161 and features["num_layers"] == 107  # 53 conv, 53 bn, 1 fc
    assert features["grad_bytes"] == 4 * 25_557_032
    assert sum(features["bucket_bytes"]) == features["grad_bytes"]
    assert features["bucket_order"] == "gradient_ready" and features["device"] == "meta"
    memory = features["memory_bytes"]
    assert memory["optimizer_state"] == memory["gradients"] == features["grad_bytes"]  # SGD momentum
    assert 1 << 30 < memory["activations"] < 6 << 30  # resnet50 trains at batch 32 in a few GiB
    assert memory["total"] == sum(v for k, v in memory.items() if k != "total")
    assert elapsed < 10, f"resnet50 features took {elapsed:.1f} s"


def test_flops_per_sample_resnet50(resnet50):
    # torchvision's resnet50 card says 4.09 "GFLOPS": that number counts multiply-adds (MACs) of the
    # forward pass. FlopCounterMode counts 2 FLOPs per multiply-add (a matmul of m x k by k x n is
    # 2mkn), and the backward of a conv or linear layer is two such products (gradient of the input
    # and of the weight), so forward + backward = 3 x 2 x 4.09e9 FLOPs per sample. (The first conv
    # needs no input gradient, about 1% less; BatchNorm, ReLU and pooling are not counted, by either.)
    features, _ = resnet50
    assert features["flops_per_sample"] == pytest.approx(3 * 2 * 4.09e9, rel=0.05)


@pytest.mark.parametrize(
    "name", ["vgg16", "mobilenet_v2", "efficientnet_b0", "convnext_tiny", "swin_t", "vit_b_16"]
)
def test_flops_match_torchvision_model_cards(name):
    # The same relation as for resnet50, with the card's number read from the weights' metadata. The
    # depthwise convolutions of MobileNet and EfficientNet test ddlprof's own formula for the
    # convolution backward: torch 2.13's FlopCounterMode counts a depthwise conv's weight gradient
    # as a dense one (MobileNetV2 came out at 7x its FLOPs).
    torchvision = zoo.import_torchvision()
    card = torchvision.models.get_model_weights(name).DEFAULT.meta["_ops"] * 1e9
    features = macro_features(name, batch_per_gpu=2)
    assert features["flops_per_sample"] == pytest.approx(3 * 2 * card, rel=0.05)


def test_adam_and_bfloat16():
    sgd = macro_features("resnet18", batch_per_gpu=2)
    adam = macro_features("resnet18", batch_per_gpu=2, optimizer="adam", dtype=torch.bfloat16)
    assert adam["grad_bytes"] * 2 == sgd["grad_bytes"]
    assert adam["memory_bytes"]["optimizer_state"] == 2 * adam["grad_bytes"]
    assert sum(adam["bucket_bytes"]) == adam["grad_bytes"] and adam["num_buckets"] < sgd["num_buckets"]
    assert adam["flops_per_sample"] == sgd["flops_per_sample"]


# --- DDP's buckets, compared with a real DDP (gloo, one rank, on the CPU) ----------------------------


@pytest.fixture(scope="module")
def process_group(tmp_path_factory):
    store = tmp_path_factory.mktemp("gloo") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _real_ddp_buckets(module: nn.Module, spec: zoo.InputSpec, **ddp_args) -> tuple[list[int], list[int]]:
    """The bucket sizes and tensors per bucket that DDP itself reports after rebuilding its buckets.

    DDP (find_unused_parameters=False) starts with one bucket of everything; during the first
    backward it records the order in which gradients become ready, and at the next forward rebuilds
    its buckets in that order. Its logging data shows the rebuilt buckets a few iterations later.
    """
    torch.manual_seed(0)
    ddp = DistributedDataParallel(module, **ddp_args)
    assert len(ddp._get_ddp_logging_data()["bucket_sizes"].split(",")) == 1, "initially one bucket"
    args, kwargs = spec.batch(2, "cpu")
    for _ in range(6):
        sum_outputs(ddp(*args, **kwargs)).backward()
        logging_data = ddp._get_ddp_logging_data()
        if "rebuilt_bucket_sizes" in logging_data:
            sizes = [int(s) for s in logging_data["rebuilt_bucket_sizes"].split(",")]
            tensors = [len(b.split()) for b in logging_data["rebuilt_per_bucket_param_indices"].split(",")]
            return sizes, tensors
    raise AssertionError(f"DDP never reported rebuilt buckets: {sorted(logging_data)}")


def _tiny_transformer(kind: str) -> nn.Module:
    import transformers

    if kind == "tiny_t5":
        config = transformers.T5Config(
            vocab_size=1000, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, use_cache=False
        )
        return transformers.T5Model(config)
    config = transformers.BertConfig(
        vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    )
    return transformers.BertModel(config)


def _small_cnn_factory(tmp_path) -> str:
    """examples/ddp_train.py's small_cnn as FILE.py:FACTORY."""
    factory = tmp_path / "small.py"
    factory.write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('ddp_train', {str(EXAMPLE)!r})\n"
        "example = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(example)\n"
        "def build():\n    return example.small_cnn(10)\n"
    )
    return f"{factory}:build"


# The tiny transformers get small buckets (many of them), where the gradient-ready order and the
# reverse parameter order give different buckets: the comparison tells the two apart.
@pytest.mark.parametrize(
    ("name", "cap_mb"),
    [("resnet18", None), ("mobilenet_v2", None), ("small_cnn", 0.02), ("tiny_bert", 0.05), ("tiny_t5", 0.05)],
)
def test_buckets_match_real_ddp(process_group, tmp_path, name, cap_mb):
    if name.startswith("tiny_"):
        module = _tiny_transformer(name)
        ours = macro_features(module, batch_per_gpu=2, bucket_cap_mb=cap_mb, seq_len=16)
        assert next(module.parameters()).device.type == "cpu", "the caller's module was left alone"
        spec = zoo.infer_input(module, 16)
    else:
        name = _small_cnn_factory(tmp_path) if name == "small_cnn" else name
        ours = macro_features(name, batch_per_gpu=2, bucket_cap_mb=cap_mb)
        resolved = zoo.resolve(name)
        module, spec = resolved.build(), resolved.input
    assert ours["bucket_order"] == "gradient_ready"
    sizes, tensors = _real_ddp_buckets(module, spec, bucket_cap_mb=cap_mb)
    assert ours["bucket_bytes"] == sizes
    assert ours["bucket_tensors"] == tensors
    assert ours["num_buckets"] == len(sizes) and ours["num_grad_tensors"] == sum(tensors)
    if name.startswith("tiny_"):
        params, sparse = ddp_parameters(module)
        cap, first = bucket_caps(cap_mb, None)
        assert ddp_buckets(params, sparse, None, cap, first)["bytes"] != sizes, "not a telling case"


def test_explicit_bucket_cap_caps_the_first_bucket_too(process_group):
    # DDP shrinks the first bucket to 1 MiB only when bucket_cap_mb is left out.
    ours = macro_features("resnet18", batch_per_gpu=2, bucket_cap_mb=5)
    assert ours["first_bucket_mb"] == ours["bucket_cap_mb"] == 5
    real = zoo.resolve("resnet18")
    sizes, tensors = _real_ddp_buckets(real.build(), real.input, bucket_cap_mb=5)
    assert (ours["bucket_bytes"], ours["bucket_tensors"]) == (sizes, tensors)
    assert len(sizes) > macro_features("resnet18", batch_per_gpu=2)["num_buckets"]


# --- names, custom modules, the CLI ---------------------------------------------------------------


def test_unknown_name_suggests_close_ones():
    with pytest.raises(DdlprofError, match="resnet50"):
        zoo.resolve("resnet5O")
    with pytest.raises(DdlprofError, match="gpt2"):
        zoo.resolve("gtp2")


def test_custom_module_input_guess_and_cpu_fallback(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Picky(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(8, 4)\n"
        "    def forward(self, x):\n"
        "        n = int(x.abs().sum() >= 0) * 4  # data-dependent: no fake tensor can answer this\n"
        "        return self.fc(x)[:, :n]\n\n"
        "def mlp():\n    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))\n\n"
        "def picky():\n    return Picky()\n"
    )
    mlp = macro_features(f"{path}:mlp", batch_per_gpu=4)
    assert mlp["input"] == {"kind": "vector", "shape": [8]} and "note" not in mlp
    assert mlp["flops_per_sample"] == 3 * 2 * (8 * 16 + 16 * 4) - 2 * 8 * 16  # no input gradient
    picky = macro_features(f"{path}:picky", batch_per_gpu=4)
    assert picky["device"] == "cpu" and "measured on the CPU" in picky["note"]
    assert picky["flops_per_sample"] == 3 * 2 * 8 * 4 - 2 * 8 * 4
    with pytest.raises(DdlprofError, match="defines: mlp, picky"):
        zoo.resolve(f"{path}:missing")


def test_cli_unknown_model_is_one_line():
    done = ddlprof("model", "features", "resnet5O")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "resnet50" in lines[0] and lines[0].startswith("ddlprof model features: error: unknown model")


def test_cli_json_keys():
    done = ddlprof("model", "features", "--json", "--batch-per-gpu", "4", "resnet18")
    assert done.returncode == 0, done.stderr
    features = json.loads(done.stdout)
    assert set(features) == set(FEATURE_KEYS)
    assert features["model"] == "resnet18" and features["batch_per_gpu"] == 4
    assert features["num_params"] == 11_689_512 and features["bucket_cap_mb"] == 25


def test_cli_help_does_not_import_torch():
    code = (
        "import sys; from ddlprof.cli import main\n"
        "for argv in (['model', '--help'], ['model', 'features', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit as exit:\n        assert exit.code == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "examples:" in done.stdout and "FILE.py:FACTORY" in done.stdout


@pytest.mark.parametrize(
    "factory, params",
    [("nn.ReLU()", 0), ("nn.Linear(4, 3).requires_grad_(False)", 15)],
    ids=["no-parameters", "frozen"],
)
def test_a_model_with_no_trainable_parameter_has_features_and_a_warning(tmp_path, factory, params):
    model = tmp_path / "m.py"
    model.write_text(
        f"import torch\nfrom torch import nn\n\ndef build():\n    return {factory}\n\n"
        "def sample_input(batch_size):\n    return torch.randn(batch_size, 4)\n"
    )
    done = ddlprof("model", "features", "--json", f"{model}:build")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["num_grad_tensors"], result["num_params"], result["bucket_bytes"]) == (0, params, [])
    assert "warning" in done.stderr and "no parameter requires a gradient" in done.stderr
    assert "Traceback" not in done.stderr
