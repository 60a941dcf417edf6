"""Published training throughput of zoo models on GPUs of the specs table: the yardstick for
``ddlprof model predict --gpu`` and ``ddlprof advise`` on GPUs this project never measured (issue 14).

``data/published_throughput.csv`` holds one row per published figure: NVIDIA's DeepLearningExamples
README tables and Lambda's deeplearning-benchmark CSVs, read from the files at pinned commits by
``benchmarks/build_published_table.py`` (``data/published_throughput.json`` says how and what was left
out). Every row names its source file, the commit read and a date, and a caveat saying what the
figure is (model implementation, data, AMP flavour, DDP or not) and where the source contradicts
itself. Throughput is samples per second of the whole run (``samples_per_s``) and per GPU.

Precision is what the math ran on: ``fp32``, ``tf32`` (fp32 tensors on TF32 tensor cores),
``amp-fp16`` or ``amp-bf16`` (autocast or apex mixed precision to that dtype; the caveat says which).

Reading the table imports no torch unless the model names are checked against the zoo
(``check_models=True``, the default), which builds the zoo's list of names.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ddlprof.errors import DdlprofError
from ddlprof.models.gpus import get_gpu

COLUMNS = (
    "model",
    "gpu",
    "precision",
    "source_precision",
    "batch_per_gpu",
    "accumulation_steps",
    "input",
    "gpus",
    "nodes",
    "samples_per_s",
    "samples_per_s_per_gpu",
    "framework",
    "data",
    "source",
    "source_detail",
    "source_commit",
    "source_date",
    "caveat",
)
PRECISIONS = ("fp32", "tf32", "amp-bf16", "amp-fp16")
#: The ``--precision`` of ``ddlprof model predict`` that a row's precision corresponds to.
PREDICTOR_PRECISION = {"fp32": "fp32", "tf32": "tf32", "amp-bf16": "bf16", "amp-fp16": "fp16"}
DATA_KINDS = ("synthetic", "real", "unknown")
_SOURCE = re.compile(r"^[\w.-]+/[\w.-]+:\S+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_INTEGER = ("batch_per_gpu", "accumulation_steps", "gpus", "nodes")
_FLOAT = ("samples_per_s", "samples_per_s_per_gpu")


@dataclass(frozen=True)
class PublishedRow:
    """One published figure; ``line`` is its line in the CSV (header = line 1)."""

    model: str
    gpu: str
    precision: str
    source_precision: str
    batch_per_gpu: int
    accumulation_steps: int
    input: str
    gpus: int
    nodes: int
    samples_per_s: float
    samples_per_s_per_gpu: float
    framework: str
    data: str
    source: str
    source_detail: str
    source_commit: str
    source_date: str
    caveat: str
    line: int

    @property
    def predictor_precision(self) -> str:
        """The ``--precision`` of ``ddlprof model predict`` for this row (amp-fp16 -> fp16)."""
        return PREDICTOR_PRECISION[self.precision]

    @property
    def sequence_length(self) -> int | None:
        """The sequence length of a transformer row (input 'seq 384'), else None."""
        match = re.fullmatch(r"seq (\d+)", self.input)
        return int(match[1]) if match else None

    @property
    def image_size(self) -> int | None:
        """The image side of a vision row (input '224x224'), else None."""
        match = re.fullmatch(r"(\d+)x(\d+)", self.input)
        return int(match[1]) if match else None


def default_path() -> Path:
    return Path(str(resources.files("ddlprof.models").joinpath("data/published_throughput.csv")))


@functools.cache
def _zoo_names() -> frozenset[str]:
    from ddlprof.models.zoo import known_names

    return frozenset(known_names())


def _parse(row: dict[str, str | None], line: int, where: str, check_models: bool) -> PublishedRow:
    cells = {key: (row.get(key) or "").strip() for key in COLUMNS}
    label = f"{where} line {line} ({cells['model'] or '?'} on {cells['gpu'] or '?'})"

    def fail(message: str) -> DdlprofError:
        return DdlprofError(f"{label}: {message}")

    missing = [key for key in COLUMNS if key not in row]
    if missing:
        raise fail(f"missing column(s) {', '.join(missing)}")
    for key in ("model", "gpu", "precision", "input", "framework", "data", "source", "source_date"):
        if not cells[key]:
            raise fail(f"{key} is empty")
    values: dict[str, int | float] = {}
    for key in _INTEGER:
        try:
            values[key] = int(cells[key])
        except ValueError as exc:
            raise fail(f"{key} is not a whole number: '{cells[key]}'") from exc
    for key in _FLOAT:
        try:
            values[key] = float(cells[key])
        except ValueError as exc:
            raise fail(f"{key} is not a number: '{cells[key]}'") from exc
    for key, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise fail(f"{key} must be positive, got {cells[key]}")
    if values["nodes"] > values["gpus"]:
        raise fail(f"{values['nodes']} nodes for {values['gpus']} GPUs")
    per_gpu = values["samples_per_s"] / values["gpus"]
    if abs(per_gpu - values["samples_per_s_per_gpu"]) > 0.006 + 1e-9 * per_gpu:
        raise fail(
            f"samples_per_s_per_gpu {cells['samples_per_s_per_gpu']} is not samples_per_s / gpus "
            f"({values['samples_per_s']:g} / {values['gpus']} = {per_gpu:.2f})"
        )
    if cells["precision"] not in PRECISIONS:
        raise fail(f"precision '{cells['precision']}' is not one of {', '.join(PRECISIONS)}")
    try:
        spec = get_gpu(cells["gpu"])
    except DdlprofError as exc:
        raise fail(str(exc)) from exc
    if spec.gpu != cells["gpu"]:
        raise fail(f"GPU '{cells['gpu']}' must be spelled as in the specs table: '{spec.gpu}'")
    if check_models and cells["model"] not in _zoo_names():
        raise fail(f"model '{cells['model']}' is not a name of ddlprof's model zoo")
    if cells["data"].split(" ", 1)[0] not in DATA_KINDS:
        raise fail(f"data must start with one of {', '.join(DATA_KINDS)}, got '{cells['data']}'")
    if not _SOURCE.match(cells["source"]):
        raise fail(f"source must be owner/repo:path, got '{cells['source']}'")
    if not _COMMIT.match(cells["source_commit"]):
        raise fail(f"source_commit must be a full 40-hex commit, got '{cells['source_commit']}'")
    if not re.search(r"\d{4}-\d\d-\d\d", cells["source_date"]):
        raise fail(f"source_date has no YYYY-MM-DD date: '{cells['source_date']}'")
    if not re.fullmatch(r"\d+x\d+|seq \d+", cells["input"]):
        raise fail(f"input must be HxW or 'seq N', got '{cells['input']}'")
    text = {key: cells[key] for key in COLUMNS if key not in values}
    return PublishedRow(**text, **values, line=line)  # type: ignore[arg-type]


def parse_published(
    text: str, where: str = "published throughput table", check_models: bool = True
) -> list[PublishedRow]:
    """Rows of a published-throughput CSV's text; DdlprofError naming the line of the first bad row."""
    reader = csv.DictReader(text.splitlines())
    header = tuple(reader.fieldnames or ())
    if header != COLUMNS:
        raise DdlprofError(f"{where}: header must be {','.join(COLUMNS)}; got {','.join(header)}")
    rows = [_parse(row, line, where, check_models) for line, row in enumerate(reader, start=2)]
    if not rows:
        raise DdlprofError(f"{where}: no rows")
    return rows


def load_published(path: Path | str | None = None, check_models: bool = True) -> list[PublishedRow]:
    """The shipped table (or the CSV at ``path``), validated: unknown GPU or model names, a bad
    precision, non-positive numbers, a per-GPU figure that is not total / GPUs, or a row without a
    source and commit raise DdlprofError naming the row."""
    target = Path(path) if path is not None else default_path()
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise DdlprofError(f"cannot read the published throughput table {target}: {exc.strerror}") from exc
    return parse_published(text, where=target.name, check_models=check_models)


#: Written by ``benchmarks/published_check.py``: its error of today's cross-GPU scaling against the
#: published 1-GPU rows, which ``ddlprof advise`` and ``ddlprof model predict`` quote for a step scaled
#: to another GPU or precision (the stall model's CV covers only the H200 data).
SCALING_ERROR_FILE = "data/scaling_error.json"


@functools.cache
def scaling_error() -> dict[str, Any]:
    """The fitted cross-GPU scaling's leave-one-GPU-out error: ``median_abs_error_pct``,
    ``worst_off_by_factor``, ``rows``, ``what`` and ``source`` (the command and commit)."""
    text = resources.files("ddlprof.models").joinpath(SCALING_ERROR_FILE).read_text(encoding="utf-8")
    return json.loads(text)
