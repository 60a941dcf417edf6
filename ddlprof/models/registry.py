"""Fitted stall models on disk: ``$DDLPROF_HOME/models/stall_models.json`` (default ``~/.ddlprof``).

The file is plain JSON: the learned model's coefficients and feature names, the baseline's one
constant, the leave-one-model-out evaluation (so that a prediction can cite its validation error),
and a version stamp: the ddlprof version, the file format, and a hash of the rows it was fitted on
(the shipped dataset plus the usable reported runs). Nothing is ever pickled or unpickled.

:func:`load_models` refits from the training rows when the file is missing, unreadable, or its
stamp differs (a new ddlprof, a new dataset, new reported runs); where the home directory cannot be
written, the refitted models are used anyway and the result says why they were not saved.

A fresh home needs no refit (which imports scikit-learn, about a second): ``data/stall_models.json``
in the package is the same fit of the shipped dataset, made by ``benchmarks/build_shipped_models.py``.
When its stamp matches the training rows (no reported runs yet, same ddlprof version), it is copied
to the home and used; a test checks that it equals a refit.

Without scikit-learn (the core install; it comes with ``ddlprof[models]``) nothing can be refitted:
where a refit would add the local store's reported runs, the shipped fit is used as it is, and
``Fitted.fallback`` says so (predict and advise print it as a warning).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ddlprof import __version__
from ddlprof.errors import DdlprofError, MissingDependency, install_hint
from ddlprof.models.baseline import AnalyticalBaseline
from ddlprof.models.dataset import training_rows
from ddlprof.models.learned import LearnedStallModel
from ddlprof.models.stall_models import StallModel
from ddlprof.runs.rundir import json_text, write_atomic

HOME_ENV = "DDLPROF_HOME"
FILE_NAME = "stall_models.json"
FORMAT = "ddlprof-stall-models/1"
SHIPPED_FIT = "data/stall_models.json"
#: Keys of the shipped fit that only its build script writes (``benchmarks/build_shipped_models.py``),
#: not ``fit``: a local refit lacks them and is still well-formed.
SHIPPED_ONLY = ("command",)


def home() -> Path:
    """``$DDLPROF_HOME``, or ``~/.ddlprof`` (as the local run store uses)."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".ddlprof"


def models_path() -> Path:
    return home() / "models" / FILE_NAME


@dataclass
class Fitted:
    """Both models, the record they were saved with, and what happened on the way."""

    models: dict[str, StallModel]
    record: dict[str, Any]
    path: Path
    refitted: bool
    notes: list[str] = field(default_factory=list)
    #: Why the models are not fitted on all the training rows (scikit-learn missing), or None.
    fallback: str | None = None

    @property
    def selected(self) -> str:
        return self.record["selected"]

    def cv(self, name: str) -> dict[str, Any]:
        """The model's leave-one-model-out errors: step MAPE, step and stall MAE."""
        targets = self.record["evaluation"]["targets"]
        return {
            "step_ms_mape_pct": targets["step_ms"][name]["mape_pct"],
            "step_ms_mae_ms": targets["step_ms"][name]["mae_ms"],
            "interconnect_stall_ms_mae_ms": targets["interconnect_stall_ms"][name]["mae_ms"],
            "network_stall_ms": "not evaluable: no multi-node data"
            if not targets["network_stall_ms"]["evaluable"]
            else {"mae_ms": targets["network_stall_ms"][name]["mae_ms"]},
            "method": "leave-one-model-out",
            "rows": targets["step_ms"]["rows"],
            "models": targets["step_ms"]["models"],
        }


def stamp(training_sha256: str) -> dict[str, str]:
    return {"format": FORMAT, "ddlprof": __version__, "training_sha256": training_sha256}


def _from_record(record: dict[str, Any]) -> dict[str, StallModel]:
    """The models of a saved fit; KeyError where its ``selected`` names neither (a null passes the
    shape check, which lets any field be null)."""
    models = {"baseline": AnalyticalBaseline(), "learned": LearnedStallModel.from_dict(record["learned"])}
    if record.get("selected") not in models:
        raise KeyError(f"selected: {record.get('selected')!r} is not a fitted model")
    return models


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _save(path: Path, record: dict[str, Any]) -> str | None:
    """Write the fit (atomically); the note saying why when it cannot be saved."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json_text(record))
    except OSError as exc:
        return f"fitted models not saved to {path}: {exc.strerror or exc}"
    except DdlprofError as exc:
        return f"fitted models not saved: {exc}"
    return None


def fit(save: bool = True, training: tuple[Any, dict[str, Any]] | None = None) -> Fitted:
    """Fit both models on the training rows (``training_rows()`` unless given), evaluate them, and
    save them (unless ``save`` is False)."""
    from ddlprof.models.evaluate import evaluate
    from ddlprof.models.stall_models import fit_models

    rows, info = training or training_rows()
    models = fit_models(rows)
    evaluation = evaluate(rows)
    step = evaluation["targets"]["step_ms"]
    selected = "learned" if step["learned_beats_baseline"] else "baseline"
    record = {
        "stamp": stamp(info["training_sha256"]),
        "fitted_unix": time.time(),
        "training": info,
        "selected": selected,
        "selection": "the model with the lower leave-one-model-out step-time error",
        "baseline": models["baseline"].describe(),
        "learned": models["learned"].to_dict(),
        "evaluation": evaluation,
    }
    path = models_path()
    note = _save(path, record) if save else None
    return Fitted(models, record, path, refitted=True, notes=[note] if note else [])


def shipped_record() -> dict[str, Any] | None:
    """The fit shipped with the package (``data/stall_models.json``), or None when absent or unreadable."""
    try:
        record = json.loads(resources.files("ddlprof.models").joinpath(SHIPPED_FIT).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _same_shape(record: Any, like: Any) -> bool:
    """Whether ``record`` has the keys and JSON types of ``like`` throughout (numbers finite), list
    items checked against ``like``'s first item: the fit as ``fit`` writes it."""
    if isinstance(like, dict):
        return isinstance(record, dict) and all(
            key in record and _same_shape(record[key], value) for key, value in like.items()
        )
    if isinstance(like, list):
        return isinstance(record, list) and (not like or all(_same_shape(item, like[0]) for item in record))
    if isinstance(like, int | float) and not isinstance(like, bool):
        number = isinstance(record, int | float) and not isinstance(record, bool)
        return number and abs(record) < 1e300  # finite, and an int that fits a float
    return like is None or record is None or type(record) is type(like)


def load_models() -> Fitted:
    """The saved models when their stamp matches the training rows; else refitted (and saved)."""
    rows, info = training_rows()
    path = models_path()
    record = _read(path)
    shipped = shipped_record()
    like = {k: v for k, v in (shipped or {}).items() if k not in SHIPPED_ONLY}
    if record is not None and shipped is not None and not _same_shape(record, like):
        record = None  # hand-edited or foreign: every part of it is read later, so it is refitted
    if record is not None and record.get("stamp") == stamp(info["training_sha256"]):
        try:
            return Fitted(_from_record(record), record, path, refitted=False)
        except (KeyError, TypeError, ValueError, AttributeError):  # a hand-edited or foreign file
            pass
    why = "missing" if not path.exists() else "stale or unreadable"
    if shipped is not None and shipped.get("stamp") == stamp(info["training_sha256"]):
        try:
            models = _from_record(shipped)
        except (KeyError, TypeError, ValueError, AttributeError):  # a hand-edited or foreign file
            pass
        else:
            note = _save(path, shipped)
            return Fitted(models, shipped, path, refitted=False, notes=[note] if note else [])
    try:
        fitted = fit(training=(rows, info))
    except MissingDependency:
        fallback = _shipped_without_refit(shipped, info)
        if fallback is None:
            raise
        return fallback
    fitted.notes.insert(0, f"fitted models {why} at {path}: refitted from the training rows")
    return fitted


def _shipped_without_refit(shipped: dict[str, Any] | None, info: dict[str, Any]) -> Fitted | None:
    """The shipped fit, where scikit-learn is missing and only the local store's rows would change it
    (same ddlprof version, same shipped dataset); None otherwise. Never saved to the home."""
    if shipped is None or shipped.get("stamp") != stamp(info["dataset_sha256"]):
        return None
    try:
        models = _from_record(shipped)
    except (KeyError, TypeError, ValueError):
        return None
    used = info.get("store_rows_used", 0)
    why = (
        f"scikit-learn is not installed, so the stall models were not refitted with the {used} usable "
        f"reported run(s) of the local store: the fit shipped with ddlprof is used "
        f"({install_hint('models')} to learn from them)"
    )
    return Fitted(models, shipped, models_path(), refitted=False, notes=[why], fallback=why)
