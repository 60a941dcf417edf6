"""Build ``ddlprof/models/data/published_throughput.csv``: published training throughput, every number
read from the cited file at the pinned commit (issue 14).

Sources (git clones or bare mirrors of both repositories, read with ``git show COMMIT:PATH``):

- NVIDIA/DeepLearningExamples: the "Training performance results" tables of the PyTorch ResNet50 v1.5,
  EfficientNet and BERT READMEs, parsed from the markdown; the batch sizes the ConvNets runs used come
  from ``configs.yml`` (the README tables do not print them).
- lambdal/deeplearning-benchmark: the throughput and batch-size CSVs Lambda publishes
  (``pytorch/csv_v1_v2/*.csv``; the 1 x and 8 x H200 rows only appear in
  ``pytorch/pytorch-train-throughput-v2-*.csv``), each cross-checked against the raw run logs under
  ``pytorch/results*/`` (the figure must equal Lambda's own compile step over those logs: the mean of
  the runs' last reported throughput, truncated to an integer). From the logs and the run directory
  come the batch per GPU (``benchmark.para``), the GPU name and PyTorch build (``sys_pytorch.txt``),
  the data backend, and for BERT the steps that actually ran.

MLPerf Training is not used: it publishes time-to-train of closed-division submissions (mostly not
plain PyTorch, with evaluation inside the timed region and per-submission hyperparameters), from
which a training throughput cannot be read, only estimated.

    git clone https://github.com/NVIDIA/DeepLearningExamples /tmp/dle
    git clone https://github.com/lambdal/deeplearning-benchmark /tmp/lambda
    python benchmarks/build_published_table.py --dle /tmp/dle --lambda /tmp/lambda

Nothing is estimated: a number no file gives is not written, and rows whose figures the files
contradict say so in ``caveat``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import re
import subprocess
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from ddlprof.models.gpus import get_gpu
from ddlprof.models.published import COLUMNS

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "ddlprof" / "models" / "data" / "published_throughput.csv"
PROVENANCE = REPO / "ddlprof" / "models" / "data" / "published_throughput.json"

DLE = "NVIDIA/DeepLearningExamples"
DLE_COMMIT = "729963dd47e7c8bd462ad10bfac7a7b0b604e6dd"  # 2024-04-04, the newest snapshot read
LAMBDA = "lambdal/deeplearning-benchmark"
LAMBDA_COMMIT = "aa5addb6a53675a649a80036dad548f1c27cbcc4"  # 2025-12-17, the newest snapshot read


class Sources:
    def __init__(self, dle: Path, lam: Path) -> None:
        self.paths = {DLE: dle, LAMBDA: lam}
        self.commits = {DLE: DLE_COMMIT, LAMBDA: LAMBDA_COMMIT}

    def git(self, repo: str, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.paths[repo]), *args], check=True, capture_output=True, text=True
        ).stdout

    def show(self, repo: str, path: str) -> str:
        return self.git(repo, "show", f"{self.commits[repo]}:{path}")

    def ls(self, repo: str, path: str) -> list[str]:
        out = self.git(repo, "ls-tree", "--name-only", f"{self.commits[repo]}", f"{path.rstrip('/')}/")
        return [line for line in out.splitlines() if line]

    def last_change(self, repo: str, path: str, needle: str) -> tuple[str, str]:
        """(commit, date) of the commit that last added or removed ``needle`` (a table row's line) in
        ``path``: the commit that published that row as it reads now."""
        out = self.git(repo, "log", "-1", "--format=%H %cs", f"-S{needle}", self.commits[repo], "--", path)
        commit, day = out.split()
        return commit, day


@dataclass
class Row:
    model: str
    gpu: str
    precision: str
    source_precision: str
    batch_per_gpu: int
    gpus: int
    samples_per_s: float
    framework: str
    data: str
    source: str
    source_detail: str
    source_commit: str
    source_date: str
    input: str
    nodes: int = 1
    accumulation_steps: int = 1
    caveats: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        per_gpu = round(self.samples_per_s / self.gpus, 2)
        out = {
            **{k: getattr(self, k) for k in COLUMNS if hasattr(self, k) and k != "caveat"},
            "samples_per_s": _number(self.samples_per_s),
            "samples_per_s_per_gpu": _number(per_gpu),
            "caveat": " ".join(c.rstrip(".") + "." for c in self.caveats),
        }
        return {k: out[k] for k in COLUMNS}


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


# --------------------------------------------------------------------------------------------------
# NVIDIA DeepLearningExamples


#: The key under which :func:`md_table` keeps each row's markdown line.
LINE = "_line"


def md_table(text: str, heading: str) -> list[dict[str, str]]:
    """The first markdown table after the line ``heading``: one dict per row, keyed by header cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    rows: list[tuple[list[str], str]] = []
    for line in lines[start + 1 :]:
        if line.strip().startswith("|"):
            cells = [cell.strip().strip("*").strip() for cell in line.strip().strip("|").split("|")]
            rows.append((cells, line))
        elif rows:
            break
    header = rows[0][0]
    body = [(r, line) for r, line in rows[1:] if not set("".join(r)) <= set(":- ")]
    for r, _ in body:
        if len(r) != len(header):
            raise SystemExit(f"{heading}: a row has {len(r)} cells, the header {len(header)}: {r}")
    return [{**dict(zip(header, r, strict=True)), LINE: line} for r, line in body]


def _value(cell: str) -> float:
    """'938 img/s' -> 938; '61.5' -> 61.5."""
    match = re.fullmatch(r"([0-9][0-9,]*(?:\.[0-9]+)?)\s*(?:img/s)?", cell.strip())
    if not match:
        raise SystemExit(f"not a throughput: {cell!r}")
    return float(match[1].replace(",", ""))


def _pair(cell: str) -> tuple[int, int]:
    """'128 and 256' -> (128, 256)."""
    a, b = (int(x) for x in re.split(r"\s+and\s+", cell.strip()))
    return a, b


CONVNETS = "PyTorch/Classification/ConvNets"
CONVNETS_AMP = (
    "AMP in this code is torch.cuda.amp autocast to fp16 with a GradScaler (static loss scale 128, "
    "configs.yml) and channels_last (memory_format nhwc in configs.yml)"
)
CONVNETS_DATA = (
    "real ImageNet through the PyTorch data loader: the README's benchmark command passes the ImageNet "
    "path and configs.yml sets data_backend pytorch (DALI and synthetic data are options, not used)"
)


def _convnets_batch(configs: dict, model: str, platform: str, precision: str) -> tuple[int, int]:
    entry = configs["models"][model][platform][precision]
    return int(entry["batch_size"]), int(entry.get("image_size") or 224)


def nvidia_resnet50(src: Sources) -> list[Row]:
    path = f"{CONVNETS}/resnet50v1.5/README.md"
    text = src.show(DLE, path)
    configs = yaml.safe_load(src.show(DLE, f"{CONVNETS}/configs.yml"))
    tables = (
        ("##### Training performance: NVIDIA DGX A100 (8x A100 80GB)", "DGXA100", "A100-80GB", "TF32"),
        ("##### Training performance: NVIDIA DGX-1 16GB (8x V100 16GB)", "DGX1V-16G", "V100-16GB", "FP32"),
        ("##### Training performance: NVIDIA DGX-1 32GB (8x V100 32GB)", "DGX1V-32G", "V100-32GB", "FP32"),
    )
    rows = []
    for heading, platform, gpu, full in tables:
        for rec in md_table(text, heading):
            commit, day = src.last_change(DLE, path, rec[LINE])
            gpus = int(rec["GPUs"])
            for column, label in ((f"Throughput - {full}", full), ("Throughput - mixed precision", "AMP")):
                batch, size = _convnets_batch(configs, "resnet50", platform, label)
                caveats = [
                    "NVIDIA's ResNet50 v1.5 (stride 2 in the 3x3 rather than the 1x1 convolution of each "
                    "downsampling block): torchvision's resnet50 is the same v1.5 architecture",
                    "batch size not printed in the table: configs.yml's batch_size for this platform and "
                    "precision, which the README's benchmark command (launch.py --platform) uses",
                    "the README's benchmark command runs 100 iterations (--epochs 1 --prof 100) with the "
                    "PyTorch data loader on real data, so a slow input pipeline would show here",
                    "Lambda ran the same code on the same GPU types with other settings (batch, synthetic "
                    "data, NCHW, a newer container): its rows differ from these, see BENCHMARKS.md",
                ]
                if label == "AMP":
                    caveats.insert(1, CONVNETS_AMP)
                if gpus > 1:
                    caveats.append(
                        f"{gpus} GPUs in one DGX with torch DistributedDataParallel (multiproc.py)"
                    )
                rows.append(
                    Row(
                        model="resnet50",
                        gpu=gpu,
                        precision={"TF32": "tf32", "FP32": "fp32", "AMP": "amp-fp16"}[label],
                        source_precision={"AMP": "mixed precision"}.get(label, label),
                        batch_per_gpu=batch,
                        gpus=gpus,
                        samples_per_s=_value(rec[column]),
                        framework="PyTorch NGC container pytorch-21.03 (README)",
                        data=CONVNETS_DATA,
                        source=f"{DLE}:{path}",
                        source_detail=f"table '{heading.lstrip('# ')}', GPUs {gpus}, column '{column}'; "
                        f"batch: {CONVNETS}/configs.yml models.resnet50.{platform}.{label}.batch_size",
                        source_commit=commit,
                        source_date=day,
                        input=f"{size}x{size}",
                        nodes=1,
                        caveats=caveats,
                    )
                )
    return rows


def nvidia_efficientnet(src: Sources) -> list[Row]:
    path = f"{CONVNETS}/efficientnet/README.md"
    text = src.show(DLE, path)
    configs = yaml.safe_load(src.show(DLE, f"{CONVNETS}/configs.yml"))
    tables = (
        ("##### Training performance: NVIDIA A100 (8x A100 80GB)", "DGXA100", "A100-80GB", "TF32"),
        ("##### Training performance: NVIDIA DGX-1 (8x V100 16GB)", "DGX1V-16G", "V100-16GB", "FP32"),
        ("##### Training performance: NVIDIA DGX-1 (8x V100 32GB)", "DGX1V-32G", "V100-32GB", "FP32"),
    )
    rows = []
    for heading, platform, gpu, full in tables:
        table = md_table(text, heading)
        for rec in table:
            commit, day = src.last_change(DLE, path, rec[LINE])
            if rec["Model"] not in ("efficientnet-b0", "efficientnet-b4"):
                continue  # the widese variants are not torchvision models
            model = rec["Model"].replace("-", "_")
            gpus = int(rec["GPUs"])
            for column, label, scaling in (
                (full, full, f"{full} Strong Scaling"),
                ("Throughput - mixed precision", "AMP", "Mixed Precision Strong Scaling"),
            ):
                batch, size = _convnets_batch(configs, rec["Model"], platform, label)
                value = _value(rec[column])
                caveats = [
                    "NVIDIA's own EfficientNet implementation (image_classification/models/efficientnet.py) "
                    f"mapped to torchvision's {model}",
                    "batch size not printed in the table: configs.yml's batch_size for this platform and "
                    "precision",
                    "the README says the figures come from the efficientnet/training/<precision>/*.sh "
                    "convergence scripts: real ImageNet with AutoAugment through the PyTorch data loader, "
                    "so the input pipeline can limit it",
                ]
                if label == "AMP":
                    caveats.insert(1, CONVNETS_AMP)
                if gpus > 1:
                    caveats.append(
                        f"{gpus} GPUs, {math.ceil(gpus / 8)} DGX node(s) of 8, torch DistributedDataParallel"
                    )
                if "32GB" in heading:
                    caveats.append(
                        "the text above this table says the runs were on 'DGX-1 (8x V100 16GB)' although "
                        "the heading says 32GB"
                    )
                if gpus == 1:
                    worse = [
                        r for r in table
                        if r["Model"] == rec["Model"] and float(r[scaling].rstrip(" x")) > int(r["GPUs"])
                    ]  # fmt: skip
                    if worse:
                        caveats.append(
                            f"SUSPECT: the {worse[0]['GPUs']}-GPU row of this table claims "
                            f"{worse[0][scaling]} strong scaling over this figure, more than linear, so this "
                            "figure or that one is wrong"
                        )
                rows.append(
                    Row(
                        model=model,
                        gpu=gpu,
                        precision={"TF32": "tf32", "FP32": "fp32", "AMP": "amp-fp16"}[label],
                        source_precision={"AMP": "mixed precision"}.get(label, label),
                        batch_per_gpu=batch,
                        gpus=gpus,
                        samples_per_s=value,
                        framework="PyTorch NGC container 21.03 (README)",
                        data="real ImageNet (AutoAugment), PyTorch data loader",
                        source=f"{DLE}:{path}",
                        source_detail=f"table '{heading.lstrip('# ')}', {rec['Model']}, GPUs {gpus}, column "
                        f"'{column}'; batch: {CONVNETS}/configs.yml models.{rec['Model']}.{platform}.{label}"
                        ".batch_size",
                        source_commit=commit,
                        source_date=day,
                        input=f"{size}x{size}",
                        nodes=math.ceil(gpus / 8),
                        caveats=caveats,
                    )
                )
    return rows


BERT = "PyTorch/LanguageModeling/BERT"
BERT_FRAMEWORK = "PyTorch NGC container pytorch:21.11-py3 (README)"
BERT_MODEL = (
    "BERT-Large of NVIDIA's modeling.py (bert_config.json: vocabulary padded to 30528) mapped to the zoo's "
    "bert-large (BertModel with pooler, vocabulary 30522)"
)
BERT_PRETRAIN = (
    "pre-training (masked-LM and next-sentence heads, LAMB, real Wikipedia data); no torch DDP: "
    "run_pretraining.py all-reduces once per accumulated batch (--allreduce_post_accumulation, on by "
    "default in scripts/run_pretraining.sh)"
)
BERT_PRETRAIN_FP16 = (
    "mixed precision here is run_pretraining.sh's default --allreduce_post_accumulation_fp16: the model is "
    "cast to fp16 (model.half()) with fp32 master weights in FusedLAMBAMP, not autocast"
)
BERT_SQUAD_FP16 = "mixed precision in run_squad.py is apex amp opt_level O2 (fp16 model, fp32 master weights)"


def nvidia_bert(src: Sources) -> list[Row]:
    path = f"{BERT}/README.md"
    text = src.show(DLE, path)
    rows = []
    heading = "###### Pre-training NVIDIA DGX A100 (8x A100 80GB)"
    for rec in md_table(text, heading):
        commit, day = src.last_change(DLE, path, rec[LINE])
        gpus, seq = int(rec["GPUs"]), int(rec["Sequence length"])
        batches = _pair(rec["Batch size / GPU (TF32 and FP16)"])
        accum = _pair(rec["Accumulation steps (TF32 and FP16)"])
        for i, (label, column) in enumerate(
            (
                ("TF32", "Throughput - TF32(sequences/sec)"),
                ("mixed precision", "Throughput - mixed precision(sequences/sec)"),
            )
        ):
            caveats = [BERT_MODEL, BERT_PRETRAIN]
            if label != "TF32":
                caveats.append(BERT_PRETRAIN_FP16)
            caveats.append("sequences per second averaged over a few training iterations (README)")
            rows.append(
                Row(
                    model="bert-large",
                    gpu="A100-80GB",
                    precision="tf32" if label == "TF32" else "amp-fp16",
                    source_precision=label,
                    batch_per_gpu=batches[i],
                    accumulation_steps=accum[i],
                    gpus=gpus,
                    samples_per_s=_value(rec[column]),
                    framework=BERT_FRAMEWORK,
                    data="real (Wikipedia pre-training shards)",
                    source=f"{DLE}:{path}",
                    source_detail=f"table '{heading.lstrip('# ')}', GPUs {gpus}, sequence length {seq}, "
                    f"column '{column}'",
                    source_commit=commit,
                    source_date=day,
                    input=f"seq {seq}",
                    caveats=caveats,
                )
            )
    heading = "###### Pre-training NVIDIA DGX A100 (8x A100 80GB) Multi-node Scaling"
    for rec in md_table(text, heading):
        commit, day = src.last_change(DLE, path, rec[LINE])
        nodes, per_node, seq = int(rec["Nodes"]), int(rec["GPUs / node"]), int(rec["Sequence length"])
        batches = _pair(rec["Batch size / GPU (TF32 and FP16)"])
        accumulated = _pair(rec["Accumulated Batch size / GPU (TF32 and FP16)"])
        accum = _pair(rec["Accumulation steps (TF32 and FP16)"])
        for i, (label, column) in enumerate(
            (("TF32", "TF32 Throughput"), ("mixed precision", "Mixed Precision Throughput"))
        ):
            caveats = [BERT_MODEL, BERT_PRETRAIN]
            if label != "TF32":
                caveats.append(BERT_PRETRAIN_FP16)
            if batches[i] * accum[i] != accumulated[i]:
                caveats.append(
                    f"the table prints batch {batches[i]} x {accum[i]} accumulation steps per GPU but an "
                    f"accumulated batch of {accumulated[i]}: one of the three is a typo (recorded as printed)"
                )
            rows.append(
                Row(
                    model="bert-large",
                    gpu="A100-80GB",
                    precision="tf32" if label == "TF32" else "amp-fp16",
                    source_precision=label,
                    batch_per_gpu=batches[i],
                    accumulation_steps=accum[i],
                    gpus=nodes * per_node,
                    nodes=nodes,
                    samples_per_s=_value(rec[column]),
                    framework=BERT_FRAMEWORK,
                    data="real (Wikipedia pre-training shards)",
                    source=f"{DLE}:{path}",
                    source_detail=f"table '{heading.lstrip('# ')}', nodes {nodes}, sequence length {seq}, "
                    f"column '{column}'",
                    source_commit=commit,
                    source_date=day,
                    input=f"seq {seq}",
                    caveats=caveats,
                )
            )
    for heading, gpu, full in (
        ("###### Fine-tuning NVIDIA DGX A100 (8x A100 80GB)", "A100-80GB", "TF32"),
        ("###### Fine-tuning NVIDIA DGX-1 With 32G", "V100-32GB", "FP32"),
    ):
        for rec in md_table(text, heading):
            commit, day = src.last_change(DLE, path, rec[LINE])
            gpus = int(rec["GPUs"])
            batches = _pair(rec[f"Batch size / GPU ({full} and FP16)"])
            for i, (label, column) in enumerate(
                (
                    (full, f"Throughput - {full}(sequences/sec)"),
                    ("mixed precision", "Throughput - mixed precision(sequences/sec)"),
                )
            ):
                caveats = [
                    BERT_MODEL + ", with a question-answering head",
                    "SQuAD v1.1 fine-tuning (scripts/run_squad.sh: max_seq_length 384)",
                ]
                if label == "mixed precision":
                    caveats.append(BERT_SQUAD_FP16)
                if gpus > 1:
                    caveats.append("apex.parallel.DistributedDataParallel, not torch DDP (run_squad.py)")
                rows.append(
                    Row(
                        model="bert-large",
                        gpu=gpu,
                        precision={"TF32": "tf32", "FP32": "fp32"}.get(label, "amp-fp16"),
                        source_precision=label,
                        batch_per_gpu=batches[i],
                        gpus=gpus,
                        samples_per_s=_value(rec[column]),
                        framework=BERT_FRAMEWORK,
                        data="real (SQuAD v1.1 train)",
                        source=f"{DLE}:{path}",
                        source_detail=f"table '{heading.lstrip('# ')}' (SQuAD), GPUs {gpus}, "
                        f"column '{column}'",
                        source_commit=commit,
                        source_date=day,
                        input="seq 384",
                        caveats=caveats,
                    )
                )
    return rows


# --------------------------------------------------------------------------------------------------
# Lambda deeplearning-benchmark

#: Lambda's row name in pytorch/csv_v1_v2/*.csv -> (ddlprof GPU, GPUs, results directory). The v1 rows
#: are the directories of scripts/compile_results_pytorch.py's table; the v2 ones (H100) are the single
#: results_v2 directory whose compiled row (pytorch-train-throughput-v2-*.csv) equals this row in every
#: column, found below and checked.
LAMBDA_ROWS: dict[str, tuple[str, int, str | None]] = {
    "LambdaCloud 1x V100 16GB": ("V100-16GB", 1, "pytorch/results/LambdaCloud_V100_16GB_v1"),
    "LambdaCloud 2x V100 16GB": ("V100-16GB", 2, "pytorch/results/LambdaCloud_2xV100_16GB_v1"),
    "LambdaCloud 4x V100 16GB": ("V100-16GB", 4, "pytorch/results/LambdaCloud_4xV100_16GB_v1"),
    "LambdaCloud 8x V100 16GB": ("V100-16GB", 8, "pytorch/results/LambdaCloud_8xV100_16GB_v1"),
    "LambdaCloud 1x A10": ("A10", 1, "pytorch/results/LambdaCloud_A10_v1"),
    "A100 80GB PCIe": ("A100-80GB-PCIe", 1, "pytorch/results/A100_80GB_PCIe_v1"),
    "2x A100 80GB PCIe": ("A100-80GB-PCIe", 2, "pytorch/results/2xA100_80GB_PCIe_v1"),
    "A100 80GB SXM4": ("A100-80GB", 1, "pytorch/results/A100_80GB_SXM4_v1"),
    "2x A100 80GB SXM4": ("A100-80GB", 2, "pytorch/results/2xA100_80GB_SXM4_v1"),
    "4x A100 80GB SXM4": ("A100-80GB", 4, "pytorch/results/4xA100_80GB_SXM4_v1"),
    "8x A100 80GB SXM4": ("A100-80GB", 8, "pytorch/results/8xA100_80GB_SXM4_v1"),
    "LambdaCloud 1x H100 80GB PCIe": ("H100-PCIe", 1, None),
    "LambdaCloud 1x H100 80GB SXM5": ("H100", 1, None),
    "LambdaCloud 2x H100 80GB SXM5": ("H100", 2, None),
    "LambdaCloud 4x H100 80GB SXM5": ("H100", 4, None),
    "LambdaCloud 8x H100 80GB SXM5": ("H100", 8, None),
}
#: H200 rows appear only in the compiled v2 CSVs (not in csv_v1_v2); the HTOff runs (hyper-threading
#: off) of the same machine are left out as near-duplicates.
LAMBDA_V2_ONLY = {
    "LambdaBM_ENG04_1xH200_140GB_SXM_h200_v2": ("H200", 1),
    "LambdaBM_ENG04_8xH200_140GB_SXM_h200_v2": ("H200", 8),
}
LAMBDA_MODELS = {"resnet50": "resnet50", "bert_base_squad": "bert-base", "bert_large_squad": "bert-large"}
#: Lambda's compile rules (scripts/compile_results_pytorch*.py): the log line and the word holding the figure.
LAMBDA_TASKS = {
    ("resnet50", "fp16"): ("PyTorch_resnet50_AMP", r"^.*Summary: train.loss.*$", 11),
    ("resnet50", "fp32"): ("PyTorch_resnet50_FP32", r"^.*Summary: train.loss.*$", 11),
    ("bert_base_squad", "fp16"): (
        "PyTorch_bert_base_squad_FP16",
        r"^.*training_sequences_per_second :.*$",
        -6,
    ),
    ("bert_base_squad", "fp32"): (
        "PyTorch_bert_base_squad_FP32",
        r"^.*training_sequences_per_second :.*$",
        -6,
    ),
    ("bert_large_squad", "fp16"): (
        "PyTorch_bert_large_squad_FP16",
        r"^.*training_sequences_per_second :.*$",
        -6,
    ),
    ("bert_large_squad", "fp32"): (
        "PyTorch_bert_large_squad_FP32",
        r"^.*training_sequences_per_second :.*$",
        -6,
    ),
}


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@dataclass
class Run:
    path: str
    figure: float
    day: str
    text: str


def _runs(src: Sources, directory: str, task: str, pattern: str, pos: int) -> list[Run]:
    runs = []
    for path in src.ls(LAMBDA, f"{directory}/{task}"):
        if not path.endswith(".txt"):
            continue
        text = src.show(LAMBDA, path)
        figure = 0.0
        for line in text.splitlines():
            for match in re.finditer(pattern, line):
                with contextlib.suppress(ValueError):
                    figure = float(match.group().split(" ")[pos])
        if figure > 0:
            d, m, y = re.match(r"(\d\d)-(\d\d)-(\d{4})_", Path(path).name).groups()
            runs.append(Run(path, figure, f"{y}-{m}-{d}", text))
    return runs


def _sys_info(src: Sources, directory: str) -> tuple[str, str]:
    text = src.show(LAMBDA, f"{directory}/sys_pytorch.txt")
    gpu = {line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("GPU:")}
    torch = {
        line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("PyTorch Version:")
    }
    if len(gpu) != 1 or len(torch) != 1:
        raise SystemExit(f"{directory}/sys_pytorch.txt: expected one GPU and one PyTorch, got {gpu} {torch}")
    return gpu.pop().replace("_", " "), torch.pop()


def _bert_steps(run: Run) -> tuple[int, int, int] | None:
    """(max_steps, epochs, iterations per epoch) of a run_squad.py log, from its arguments and tqdm bar."""
    steps = re.search(r"max_steps=([0-9.]+)", run.text)
    epochs = re.search(r"num_train_epochs=([0-9.]+)", run.text)
    bar = re.search(r"Iteration:\s+\d+%\|[^|]*\|\s*\d+/(\d+)", run.text)
    if not (steps and epochs and bar):
        return None
    return int(float(steps[1])), int(float(epochs[1])), int(bar[1])


def lambda_rows(src: Sources) -> list[Row]:
    v2 = {
        p: {r[""]: r for r in _csv(src.show(LAMBDA, f"pytorch/pytorch-train-throughput-v2-{p}.csv"))}
        for p in ("fp16", "fp32")
    }
    published: list[
        tuple[str, str, int, str, dict[str, dict[str, str]], dict[str, dict[str, str]] | None, str]
    ] = []
    thr = {
        p: {
            r["name_gpu"]: r
            for r in _csv(src.show(LAMBDA, f"pytorch/csv_v1_v2/pytorch-train-throughput-{p}.csv"))
        }
        for p in ("fp16", "fp32")
    }
    bs = {
        p: {r["name_gpu"]: r for r in _csv(src.show(LAMBDA, f"pytorch/csv_v1_v2/pytorch-train-bs-{p}.csv"))}
        for p in ("fp16", "fp32")
    }
    for name, (gpu, count, directory) in LAMBDA_ROWS.items():
        if directory is None:
            metrics = (
                "ssd",
                "bert_base_squad",
                "bert_large_squad",
                "gnmt",
                "resnet50",
                "tacotron2",
                "waveglow",
            )
            match = [
                system
                for system in v2["fp16"]
                if all(
                    float(v2[p][system][m]) == float(thr[p][name][m])
                    for p in ("fp16", "fp32")
                    for m in metrics
                )
            ]
            if len(match) != 1:
                raise SystemExit(f"{name}: {len(match)} results_v2 rows match it: {match}")
            directory = f"pytorch/results_v2/{match[0]}"
        published.append(
            (name, gpu, count, directory, thr, bs, "pytorch/csv_v1_v2/pytorch-train-throughput-{p}.csv")
        )
    for system, (gpu, count) in LAMBDA_V2_ONLY.items():
        table = {p: {system: {**v2[p][system], "num_gpu": str(count)}} for p in ("fp16", "fp32")}
        published.append(
            (
                system,
                gpu,
                count,
                f"pytorch/results_v2/{system}",
                table,
                None,
                "pytorch/pytorch-train-throughput-v2-{p}.csv",
            )
        )

    rows = []
    for name, gpu, count, directory, table, batches, csv_path in published:
        sys_gpu, torch_version = _sys_info(src, directory)
        if get_gpu(sys_gpu).gpu != gpu:
            raise SystemExit(f"{directory}: sys_pytorch.txt names {sys_gpu}, not {gpu}")
        commit, _ = src.git(LAMBDA, "log", "-1", "--format=%H %cs", LAMBDA_COMMIT, "--", directory).split()
        for (column, p), (task, pattern, pos) in LAMBDA_TASKS.items():
            figure = float(table[p][name][column])
            if int(float(table[p][name]["num_gpu"])) != count:
                raise SystemExit(f"{name}: num_gpu {table[p][name]['num_gpu']} != {count}")
            runs = _runs(src, directory, task, pattern, pos)
            compiled = int(round(sum(r.figure for r in runs) / len(runs), 2)) if runs else 0
            if compiled != int(figure):
                raise SystemExit(f"{name} {column} {p}: published {figure}, its logs compile to {compiled}")
            para = src.show(LAMBDA, f"{directory}/{task}/benchmark.para")
            global_batch = int(re.search(r"GLOBAL_BATCH (\d+)", para)[1])
            para_gpus = int(re.search(r"GPU (\d+)", para)[1])
            if para_gpus != count or global_batch % count:
                raise SystemExit(f"{directory}/{task}/benchmark.para: {para!r} for {count} GPUs")
            if batches is not None and int(float(batches[p][name][column])) != global_batch:
                raise SystemExit(f"{name} {column}: batch CSV {batches[p][name][column]} != {global_batch}")
            model = LAMBDA_MODELS[column]
            days = sorted({r.day for r in runs})
            caveats = []
            ampere = gpu not in ("V100-16GB",)
            if column == "resnet50":
                backend = {re.search(r"data_backend : (\S+)", r.text)[1] for r in runs}
                layout = {re.search(r"memory_format : (\S+)", r.text)[1] for r in runs}
                if backend != {"synthetic"}:
                    raise SystemExit(f"{directory}/{task}: data backend {backend}")
                data, size = "synthetic", "224x224"
                caveats.append(
                    "NVIDIA DeepLearningExamples' ResNet50 v1.5 code (Lambda's fork) run by Lambda; "
                    "torchvision's "
                    "resnet50 is the same v1.5 architecture"
                )
                caveats.append(f"memory format {', '.join(sorted(layout))} (not channels_last)")
                if p == "fp16":
                    precision, label = "amp-fp16", "AMP"
                    caveats.append(
                        "AMP is torch.cuda.amp autocast to fp16 with a static loss scale of 256 (--amp)"
                    )
                elif ampere:
                    precision, label = "tf32", "FP32"
                    caveats.append(
                        "Lambda labels it FP32; PyTorch runs fp32 convolutions on TF32 tensor cores by "
                        "default "
                        "(torch.backends.cudnn.allow_tf32 = True) on this GPU, so it is recorded as tf32"
                    )
                else:
                    precision, label = "fp32", "FP32"
                caveats.append(
                    "images/s of the training epoch summary (train.total_ips), 100 iterations per epoch"
                )
            else:
                data = "real (SQuAD v1.1 train)"
                seq = {re.search(r"max_seq_length=(\d+)", r.text)[1] for r in runs}
                size = f"seq {seq.pop()}" if len(seq) == 1 else "seq ?"
                caveats.append(
                    "NVIDIA DeepLearningExamples' BERT SQuAD fine-tuning (run_squad.py, "
                    f"{model.upper().replace('-', ' ')} "
                    "with a question-answering head) mapped to the zoo's "
                    f"{model} (BertModel with pooler)"
                )
                if p == "fp16":
                    precision, label = "amp-fp16", "FP16"
                    caveats.append(
                        "FP16 is apex amp opt_level O2 (fp16 model, fp32 master weights), not autocast"
                    )
                else:
                    precision, label = "fp32", "FP32"
                    if ampere:
                        caveats.append(
                            "FP32: whether the matmuls ran on TF32 tensor cores depends on the NGC "
                            "container's TF32 setting, which the logs do not record (PyTorch >= 1.12 "
                            "defaults to fp32 matmuls)"
                        )
                if count > 1:
                    caveats.append("apex.parallel.DistributedDataParallel, not torch DDP")
                caveats.append(
                    "training_sequences_per_second = batch x max_steps x GPUs / training time, with the "
                    "first "
                    "iterations (loss-scale search, warm-up) inside the timed window"
                )
                short = []
                for r in runs:
                    steps = _bert_steps(r)
                    if steps is None:
                        short.append(f"{Path(r.path).name}: step count not in the log")
                        continue
                    max_steps, epochs, per_epoch = steps
                    if epochs * per_epoch < max_steps:
                        short.append(
                            f"{Path(r.path).name} ran {epochs} epochs x {per_epoch} iterations = "
                            f"{epochs * per_epoch} steps but counts max_steps {max_steps}"
                        )
                if short:
                    caveats.append(
                        "STEPS NOT RUN COUNTED: the figure counts steps that did not run, so it overstates "
                        "the "
                        "throughput (by up to max_steps / steps run): " + "; ".join(short)
                    )
            if count > 1 and column == "resnet50":
                caveats.append(f"{count} GPUs in one machine, DDP via DeepLearningExamples' multiproc.py")
            source_path = csv_path.format(p=p)
            detail = f"row '{name}', column '{column}'"
            if batches is not None:
                detail += f"; batch: pytorch/csv_v1_v2/pytorch-train-bs-{p}.csv"
            detail += (
                f"; runs: {directory}/{task}/ ({len(runs)} log(s), the published figure is their mean; "
                f"batch, GPU and PyTorch from benchmark.para and sys_pytorch.txt there)"
            )
            rows.append(
                Row(
                    model=model,
                    gpu=gpu,
                    precision=precision,
                    source_precision=label,
                    batch_per_gpu=global_batch // count,
                    gpus=count,
                    samples_per_s=figure,
                    framework=f"PyTorch {torch_version} (NGC container, sys_pytorch.txt)",
                    data=data,
                    source=f"{LAMBDA}:{source_path}",
                    source_detail=detail,
                    source_commit=LAMBDA_COMMIT,
                    source_date=f"runs {', '.join(days)} (results committed in {commit[:12]})",
                    input=size,
                    caveats=caveats,
                )
            )
    return rows


def scaling_caveats(rows: list[Row]) -> None:
    """Say so where a multi-GPU figure of a source is more than linear in its own 1-GPU figure of the
    same configuration, or below half of linear."""
    single = {
        (
            r.source,
            r.model,
            r.gpu,
            r.precision,
            r.batch_per_gpu,
            r.accumulation_steps,
            r.input,
        ): r.samples_per_s
        for r in rows
        if r.gpus == 1
    }
    for r in rows:
        key = (r.source, r.model, r.gpu, r.precision, r.batch_per_gpu, r.accumulation_steps, r.input)
        if r.gpus == 1 or key not in single:
            continue
        efficiency = r.samples_per_s / (r.gpus * single[key])
        if efficiency > 1.0:
            r.caveats.append(
                f"SUSPECT: {efficiency:.0%} of linear scaling over the same source's 1-GPU figure "
                f"({single[key]:g}), more than linear"
            )
        elif efficiency < 0.5:
            r.caveats.append(
                f"scaling: {efficiency:.0%} of linear over the same source's 1-GPU figure ({single[key]:g})"
            )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dle", type=Path, required=True, help="a clone of NVIDIA/DeepLearningExamples")
    parser.add_argument(
        "--lambda", dest="lam", type=Path, required=True, help="a clone of lambdal/deeplearning-benchmark"
    )
    args = parser.parse_args()
    src = Sources(args.dle, args.lam)
    rows = [*nvidia_resnet50(src), *nvidia_efficientnet(src), *nvidia_bert(src), *lambda_rows(src)]
    scaling_caveats(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.as_dict())
    OUT.write_text(buffer.getvalue(), encoding="utf-8")
    provenance = {
        "description": "Published single- and multi-GPU training throughput (samples/s) of models in "
        "ddlprof's zoo on GPUs in its specs table, every number read from the cited file; the yardstick "
        "of `ddlprof model predict --gpu` (issue 14).",
        "built": "python benchmarks/build_published_table.py --dle <clone> --lambda <clone>",
        "built_on": date.today().isoformat(),
        "sources": {
            DLE: {
                "commit": DLE_COMMIT,
                "files": sorted({r.source.split(":", 1)[1] for r in rows if r.source.startswith(DLE)}),
            },
            LAMBDA: {
                "commit": LAMBDA_COMMIT,
                "files": sorted({r.source.split(":", 1)[1] for r in rows if r.source.startswith(LAMBDA)}),
            },
        },
        "not_used": {
            "MLPerf Training": "publishes time-to-train to a quality target (evaluation inside the timed "
            "region, per-submission hyperparameters, often not plain PyTorch), not throughput: samples/s "
            "could only be estimated from epochs x data set size / time",
            "NVIDIA BERT pre-training on DGX-1 (V100 32GB)": "the table's 'Batch size / GPU' column prints "
            "4096 (sequence 128) and 2048 (512) for both precisions beside 64 to 512 accumulation steps, "
            "i.e. the accumulated batch: the per-step batch is not printed",
            "NVIDIA ResNeXt101-32x4d, SE-ResNeXt101-32x4d, EfficientNet-WideSE, GPUNet and the non-vision/"
            "non-BERT models": "not torchvision classification models or built-in transformers of "
            "ddlprof's zoo (timm, which it reads when installed, is not assumed)",
            "Lambda RTX, Quadro, A100 40GB PCIe, GH200 and B200 rows": "GPUs not in ddlprof's specs table",
            "Lambda ssd, gnmt, ncf, tacotron2, waveglow, transformer-xl": "not models of ddlprof's zoo",
        },
        "columns": {
            "model": "ddlprof zoo name",
            "gpu": "ddlprof GPU specs name (ddlprof/models/data/gpu_specs.csv)",
            "precision": "fp32 | tf32 | amp-bf16 | amp-fp16: what the math ran on (amp = autocast or apex "
            "mixed precision, caveat says which); no source row used bf16",
            "source_precision": "the source's own label",
            "batch_per_gpu": "samples per GPU per optimizer micro-step",
            "accumulation_steps": "micro-steps per optimizer step (gradient accumulation)",
            "input": "image side in pixels (HxW) or sequence length",
            "gpus": "GPUs in the run, all nodes",
            "nodes": "machines in the run",
            "samples_per_s": "the published figure, all GPUs together",
            "samples_per_s_per_gpu": "samples_per_s / gpus, rounded to 0.01",
            "framework": "PyTorch build or NGC container, as the source names it",
            "data": "synthetic or real (which data set)",
            "source": "owner/repo:path of the file the figure was read from",
            "source_detail": "table and row or column, and the files batch and framework came from",
            "source_commit": "Lambda: the commit read; NVIDIA: the commit that wrote the row's table line "
            "as it reads at the commit read (git log -S)",
            "source_date": "NVIDIA: date of that commit; Lambda: dates of the runs (log file names) and the "
            "commit that added the results",
            "caveat": "what the figure is and is not, per row",
        },
        "rows": len(rows),
    }
    PROVENANCE.write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    print(f"{len(rows)} rows -> {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
