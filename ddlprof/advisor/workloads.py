"""How much training a job is: samples per epoch and epochs, from the user or from well-known defaults.

``ddlprof advise`` prices a whole training run, so it needs the number of samples the job processes:
``--samples N`` (per epoch) or ``--dataset NAME|SIZE``, times ``--epochs``. Without them, a model of
the shipped stall dataset gets the workload it is best known for, with its source:

- the ImageNet classifiers (resnet50, vgg16, vit_b_16, ...): ImageNet-1k (ILSVRC-2012), 1,281,167
  training images, 90 epochs: the schedule of Goyal et al., "Accurate, Large Minibatch SGD" (2017)
  and the default ``--epochs 90`` of PyTorch's reference ImageNet scripts (pytorch/examples
  ``imagenet/main.py``, torchvision ``references/classification``). Torchvision's recipes for the
  newer architectures (ViT, Swin, ConvNeXt, EfficientNet, MobileNetV3) train for hundreds of epochs
  instead: pass ``--epochs`` for those.
- bert-base: BERT-Base pre-training, 1,000,000 steps of 256 sequences = 256,000,000 sequences
  (Devlin et al., "BERT", NAACL 2019, appendix A.2: "batch size of 256 sequences ... for 1,000,000
  steps, which is approximately 40 epochs over the 3.3 billion word corpus"). The paper ran 90% of
  those steps at 128 tokens and the last 10% at 512; ddlprof's step time is measured at 128 tokens,
  so the estimate prices every step at 128 tokens and is low for the last tenth.
- gpt2 and any other model: no default; ``--samples`` or ``--dataset`` is required.

No torch, no pandas: plain data.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ddlprof.errors import DdlprofError

IMAGENET_1K = 1_281_167

#: Training-set sizes of well-known datasets (samples), with where the number comes from.
DATASETS: dict[str, tuple[int, str]] = {
    "imagenet-1k": (IMAGENET_1K, "ImageNet-1k (ILSVRC-2012) training images"),
    "cifar-10": (50_000, "CIFAR-10 training images (Krizhevsky 2009)"),
    "cifar-100": (50_000, "CIFAR-100 training images (Krizhevsky 2009)"),
    "mnist": (60_000, "MNIST training images (LeCun et al. 1998)"),
    "coco-2017": (118_287, "COCO 2017 train2017 images"),
}
_ALIASES = {
    "imagenet": "imagenet-1k",
    "imagenet1k": "imagenet-1k",
    "ilsvrc2012": "imagenet-1k",
    "cifar10": "cifar-10",
    "cifar100": "cifar-100",
    "coco": "coco-2017",
    "coco2017": "coco-2017",
}

IMAGENET_EPOCHS = 90
IMAGENET_SOURCE = (
    "ImageNet-1k, 1,281,167 training images x 90 epochs (Goyal et al. 2017; default --epochs 90 of "
    "PyTorch's reference ImageNet scripts)"
)
IMAGENET_MODELS = (
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "mnasnet1_0",
    "mobilenet_v3_large",
    "regnet_y_1_6gf",
    "resnet18",
    "resnet50",
    "resnet101",
    "resnet152",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "swin_t",
    "vgg11",
    "vgg16",
    "vit_b_16",
    "wide_resnet50_2",
)
BERT_PRETRAINING_SEQUENCES = 1_000_000 * 256
BERT_SOURCE = (
    "BERT-Base pre-training: 1,000,000 steps x 256 sequences = 256,000,000 sequences, counted as one "
    "epoch (Devlin et al., NAACL 2019, appendix A.2); every step priced at 128 tokens (the measured "
    "length), though the paper ran the last 10% at 512"
)
#: Models trained for hundreds of epochs in torchvision's own recipes: the 90-epoch default is low.
LONG_RECIPES = ("convnext_tiny", "efficientnet_b0", "mobilenet_v3_large", "swin_t", "vit_b_16")


@dataclass(frozen=True)
class Workload:
    """Samples per epoch x epochs, and where each comes from."""

    samples_per_epoch: int
    epochs: float
    source: str
    dataset: str | None = None
    note: str | None = None

    @property
    def total_samples(self) -> float:
        return self.samples_per_epoch * self.epochs

    def to_dict(self) -> dict:
        return {
            "samples_per_epoch": self.samples_per_epoch,
            "epochs": self.epochs,
            "total_samples": self.total_samples,
            "dataset": self.dataset,
            "source": self.source,
            **({"note": self.note} if self.note else {}),
        }


def default_workload(model: str) -> Workload | None:
    """The well-known workload of a model of the shipped dataset, or None when there is none."""
    name = model.strip().lower()
    if name in IMAGENET_MODELS:
        note = (
            f"torchvision's own recipe for {name} trains for hundreds of epochs, not 90: pass --epochs"
            if name in LONG_RECIPES
            else None
        )
        return Workload(IMAGENET_1K, IMAGENET_EPOCHS, IMAGENET_SOURCE, "imagenet-1k", note)
    if name == "bert-base":
        return Workload(BERT_PRETRAINING_SEQUENCES, 1, BERT_SOURCE, "bert-base pre-training")
    return None


_SIZE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*([kmb]?)\s*$", re.IGNORECASE)  # signed: -3 is out of range
_MULTIPLIER = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
MAX_SAMPLES = 10**15  # samples per epoch: far above any dataset trained on (LAION-5B: 5.85 billion)
_SAMPLES_RANGE = f"the allowed range: from 1 to {MAX_SAMPLES:,} samples per epoch"


def parse_size(text: str) -> int | None:
    """A sample count such as ``50000``, ``50k``, ``2.5M``, ``1_281_167`` or ``1,281,167``; else None.
    A count outside 1 to MAX_SAMPLES (a string of 400 digits, 0) is an error naming the range."""
    match = _SIZE.match(text.replace("_", "").replace(",", ""))
    if match is None:
        return None
    value = float(match.group(1)) * _MULTIPLIER[match.group(2).lower()]
    if not 1 <= value <= MAX_SAMPLES:
        raise DdlprofError(f"{text.strip()} is outside {_SAMPLES_RANGE}")
    return round(value)


def dataset_size(text: str) -> tuple[int, str, str | None]:
    """(samples per epoch, source, dataset name) for ``--dataset NAME|SIZE``."""
    try:
        size = parse_size(text)
    except DdlprofError as exc:
        raise DdlprofError(f"--dataset: {exc}") from None
    if size is not None:
        return size, f"--dataset {text}: {size:,} samples per epoch (given)", None
    key = text.strip().lower()
    key = _ALIASES.get(key, key)
    if key in DATASETS:
        samples, what = DATASETS[key]
        return samples, f"{what}: {samples:,} samples per epoch", key
    names = [*DATASETS, *_ALIASES]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    closest = f"; closest: {', '.join(dict.fromkeys(_ALIASES.get(c, c) for c in close))}" if close else ""
    raise DdlprofError(
        f"unknown dataset {text!r}{closest}; known: {', '.join(DATASETS)}, or a size such as 50000 or 2.5M"
    )


def resolve_workload(
    model: str, samples: str | int | None, dataset: str | None, epochs: float | None
) -> Workload:
    """The workload from ``--samples`` / ``--dataset`` / ``--epochs``, falling back on the model's
    default; an error says what to pass when there is neither."""
    if samples is not None and dataset is not None:
        raise DdlprofError("pass --samples or --dataset, not both")
    if epochs is not None and not epochs > 0:
        raise DdlprofError(f"--epochs must be positive, got {epochs:g}")
    default = default_workload(model)
    if samples is not None:
        try:
            count = parse_size(str(samples))
        except DdlprofError as exc:
            raise DdlprofError(f"--samples: {exc}") from None
        if count is None:
            raise DdlprofError(
                f"--samples {samples}: not a number of samples (e.g. 1281167 or 1.2M); {_SAMPLES_RANGE}"
            )
        per_epoch, source, name = count, f"--samples {count:,} per epoch (given)", None
    elif dataset is not None:
        per_epoch, source, name = dataset_size(dataset)
    elif default is not None:
        if epochs is None:
            return default
        per_epoch, name = default.samples_per_epoch, default.dataset
        source = default.source.split(" x ")[0] if default.dataset == "imagenet-1k" else default.source
    else:
        raise DdlprofError(
            f"no default workload for {model}: pass --samples N (samples per epoch) or --dataset NAME|SIZE "
            f"({', '.join(DATASETS)}), and --epochs"
        )
    chosen = epochs if epochs is not None else 1
    how = f"{chosen:g} epoch(s) (--epochs)" if epochs is not None else "1 epoch (no --epochs given)"
    return Workload(per_epoch, chosen, f"{source}; {how}", name)
