"""The measured stall dataset shipped with ddlprof, its provenance, and the rows the models train on.

``data/stall_dataset.csv`` (built by ``benchmarks/build_stall_dataset.py`` from
``benchmarks/results/gpu-2xh200/dataset.csv``) holds one row per (model, batch_per_gpu, transport):
step times on one GPU and under DDP on 2 x H200 of one host over NVLink, PCIe and loopback sockets,
the transport's measured all-reduce bus bandwidth and latency, the differential stalls, and the
model's macro features. ``data/stall_dataset.json`` says where every number comes from.

Only world size 2 on one node was measured: every row has ``nodes`` = 1 and ``network_stall_ms`` = 0.

Rows of runs the user reported (``ddlprof.runs.store``, when present) join the training set when
they have what the models need (the single-GPU step time above all, which one wrapped run cannot
know); :func:`training_rows` says how many were used and why the others were not.

No torch here: offline commands import this.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from ddlprof.errors import DdlprofError

DATA_CSV = "data/stall_dataset.csv"
DATA_JSON = "data/stall_dataset.json"

#: Macro features the models use (``ddlprof.models.features`` names), per model, batch-independent.
FEATURE_COLUMNS = (
    "num_layers",
    "num_grad_tensors",
    "num_params",
    "grad_bytes",
    "num_buckets",
    "last_bucket_bytes",
    "flops_per_sample",
)
#: What a row needs to train or evaluate the stall models.
REQUIRED = (
    "model",
    "batch_per_gpu",
    "gpus_per_node",
    "nodes",
    "world_size",
    "single_gpu_step_ms",
    "step_ms",
    "grad_bytes",
    "num_buckets",
    "num_grad_tensors",
)


def _read(name: str) -> bytes:
    return resources.files("ddlprof.models").joinpath(name).read_bytes()


@functools.cache
def _shipped() -> tuple[bytes, pd.DataFrame]:
    raw = _read(DATA_CSV)
    frame = pd.read_csv(io.BytesIO(raw))
    missing = [c for c in (*REQUIRED, *FEATURE_COLUMNS, "intra_busbw_gbps", "latency_us") if c not in frame]
    if missing:
        raise DdlprofError(f"the shipped stall dataset lacks {', '.join(missing)}; reinstall ddlprof")
    frame["source"] = "shipped"
    return raw, frame


def load_dataset() -> pd.DataFrame:
    """The shipped dataset (a copy), with a ``source`` column set to "shipped"."""
    return _shipped()[1].copy()


@functools.cache
def provenance() -> dict[str, Any]:
    """Where the shipped dataset comes from: hardware, driver, torch, NCCL, date, commands, limits."""
    return json.loads(_read(DATA_JSON))


def dataset_hash() -> str:
    """sha256 of the shipped CSV's bytes."""
    return hashlib.sha256(_shipped()[0]).hexdigest()


def known_models() -> list[str]:
    """The models measured in the shipped dataset."""
    return sorted(_shipped()[1]["model"].unique())


def lookup_model(name: str) -> str | None:
    """The dataset's spelling of ``name`` (case-insensitive), or None when it was not measured."""
    by_lower = {m.lower(): m for m in known_models()}
    return by_lower.get(name.strip().lower())


def model_rows(name: str) -> pd.DataFrame:
    """The shipped rows of one measured model (empty when it was not measured)."""
    frame = _shipped()[1]
    return frame[frame["model"] == name].copy()


def shipped_features(name: str) -> dict[str, float]:
    """The feature columns of a measured model, as shipped (they do not depend on the batch)."""
    row = model_rows(name).iloc[0]
    return {c: float(row[c]) for c in FEATURE_COLUMNS}


def feature_columns(result: dict[str, Any]) -> dict[str, Any]:
    """The feature columns from a ``macro_features`` result: its own keys, and the last DDP
    bucket's bytes (the bucket whose all-reduce is always exposed)."""
    out = {c: result.get(c) for c in FEATURE_COLUMNS if c != "last_bucket_bytes"}
    out["last_bucket_bytes"] = result["bucket_bytes"][-1] if result["bucket_bytes"] else 0
    return out


def transports() -> dict[str, dict[str, float]]:
    """Measured transports: name -> intra_busbw_gbps, latency_us (2 x H200, world size 2)."""
    return dict(provenance()["transports"])


def store_rows() -> tuple[pd.DataFrame | None, str]:
    """Reported runs from ``ddlprof.runs.store`` (None if there is no store module or it fails),
    and a note for the user."""
    try:
        from ddlprof.runs import store
    except ImportError:
        return None, "no local store of reported runs in this ddlprof"
    try:
        rows = store.load_rows()
    except Exception as exc:  # a broken local database must not stop the shipped models
        return None, f"local store of reported runs not used: {' '.join(str(exc).split())}"
    return rows, f"{len(rows)} reported run(s) in the local store"


def usable(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows the models can learn from, and how many others were dropped for which reason."""
    dropped: dict[str, int] = {}
    keep = pd.Series(True, index=frame.index)
    for column in REQUIRED:
        if column not in frame:
            dropped[f"no {column} column"] = int(keep.sum())
            return frame.iloc[0:0], dropped
        bad = keep & frame[column].isna()
        if bad.any():
            dropped[f"no {column}"] = int(bad.sum())
            keep &= ~bad
        if column != "model":  # a number: finite and not negative, or the row is not learned from
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = keep & ~(np.isfinite(values) & (values >= 0))
            if bad.any():
                dropped[f"bad {column}"] = int(bad.sum())
                keep &= ~bad
    if "gpu" in frame:  # the models are of GPU jobs: a CPU run's "interconnect" is ranks sharing cores
        bad = keep & frame["gpu"].isna()
        if bad.any():
            dropped["a CPU run (no GPU)"] = int(bad.sum())
            keep &= ~bad
    single_node = frame["nodes"] == 1
    no_intra = keep & (frame["gpus_per_node"] > 1) & frame["intra_busbw_gbps"].isna() & single_node
    no_inter = keep & (frame["nodes"] > 1) & frame["inter_busbw_gbps"].isna()
    for reason, bad in (("no intra-node bandwidth", no_intra), ("no inter-node bandwidth", no_inter)):
        if bad.any():
            dropped[reason] = int(bad.sum())
            keep &= ~bad
    return frame[keep].copy(), dropped


def training_rows(include_store: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The shipped rows plus the usable reported ones, and what was used (for the version stamp and
    the user: counts, the store's note, drop reasons, a hash of the rows)."""
    shipped = load_dataset()
    info: dict[str, Any] = {"shipped_rows": len(shipped), "dataset_sha256": dataset_hash()}
    frames = [shipped]
    if include_store:
        rows, note = store_rows()
        info["store"] = note
        if rows is not None and len(rows):
            good, dropped = usable(rows)
            info["store_rows_used"] = len(good)
            info["store_rows_dropped"] = dropped
            if len(good):
                frames.append(good[[c for c in good.columns if c in shipped.columns]])
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else shipped
    digest = hashlib.sha256(_shipped()[0])
    if len(frames) > 1:
        digest.update(frames[1].to_csv(index=False).encode())
    info["training_sha256"] = digest.hexdigest()
    info["rows"] = len(frame)
    info["models"] = int(frame["model"].nunique())
    return frame, info
