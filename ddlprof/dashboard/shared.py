"""What the pages share: Streamlit caches over ``data.py``, the runs directory, keyed tables.

A run's summary is cached under its path and the signature of its files (names, sizes, modification
times), so an unchanged run is summarised once per dashboard process and a run that is still being
written (or re-run into a new directory) is summarised again when its files change. The local
dataset is keyed on the database's modification time, the models' validation on the hash of their
training rows.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import streamlit as st

from ddlprof.dashboard import data
from ddlprof.errors import DdlprofError
from ddlprof.runs.breakdown import LABELS

RUNS_KEY = "runs_dir"
#: What a table shows for a missing value, where Streamlit shows a grey "None"; the column's help says why
#: a value can be missing. A numeric column stays numeric (it sorts as numbers): a reason in its cells
#: would make it text.
MISSING = "—"
#: Column headers and formats of the numbers every page's tables show (ms a step, samples/s), narrow
#: enough for a table of runs to fit a 1440-px screen.
STEP = st.column_config.NumberColumn("step ms", format="%.2f", width="small")
RATE = st.column_config.NumberColumn("samples/s", format="%.0f", width="small")
#: Column widths in px (else 'small', 75 px): the grid starts a header 8 px in, and in its 14-px Source Sans
#: "interconnect" is 74 px wide, "wait for peers" 79 px (canvas measureText in Chromium), cut at 75 px;
#: the data and other columns' headers are short, and their values hold to "9999.99" (45 px) in 65 px.
WIDTHS = {"interconnect_stall_ms": 95, "wait_for_peers_ms": 100, "data_stall_ms": 65, "other_ms": 65}
CATEGORY_COLUMNS = {
    key: st.column_config.NumberColumn(
        label.replace(" stall", ""), format="%.2f", width=WIDTHS.get(key, "small"), help=f"{label}, ms a step"
    )
    for key, label in LABELS.items()
}
NUMBER_COLUMNS = {"step_ms": STEP, **CATEGORY_COLUMNS, "throughput_samples_per_s": RATE}
#: The local dataset's gpu column (the Runs and Models pages): the dataset keeps no name for a CPU job's.
GPU = st.column_config.TextColumn(
    "gpu", help=f"The GPU the ranks ran on; {MISSING} for a job on CPUs (or a GPU the run did not name)"
)
#: The local dataset's table, the same on the Runs and Models pages.
STORE_COLUMNS = NUMBER_COLUMNS | {
    "world_size": st.column_config.NumberColumn("ranks"),
    "gpus_per_node": st.column_config.NumberColumn("GPUs/node"),
    "gpu": GPU,
    "run_id": st.column_config.TextColumn("run id"),
    "run_dir": st.column_config.TextColumn("run directory"),
}
#: The instance options picked on the Advisor page (comparables), read by the Compare page.
ADVISOR_OPTIONS_KEY = "advisor_options"


def runs_root() -> Path:
    """The runs directory in the sidebar (``ddlprof dashboard --runs``, by default)."""
    return Path(st.session_state.get(RUNS_KEY) or data.runs_dir()).expanduser()


@st.cache_data(show_spinner=False, max_entries=20_000)
def summary(path: str, signature: tuple) -> dict[str, Any]:
    return data.load_summary(Path(path))


@st.cache_data(show_spinner=False, max_entries=64)
def detail(path: str, signature: tuple) -> dict[str, Any]:
    return data.load_detail(Path(path))


@st.cache_data(show_spinner=False, max_entries=16)
def store_rows(path: str, mtime_ns: int | None) -> dict[str, Any]:
    return data.store_rows()


@st.cache_data(show_spinner="Validating the stall models (leave-one-model-out)...", max_entries=8)
def model_validation(training_sha256: str) -> dict[str, Any]:
    return data.model_validation()


def runs(root: Path) -> tuple[list[tuple[data.FoundRun, dict[str, Any]]], str | None]:
    """Every run under ``root`` with its summary or error, and the runs directory's own error."""
    try:
        found = data.find_runs(root)
    except DdlprofError as exc:
        return [], str(exc)
    return [(run, summary(str(run.path), run.signature)) for run in found], None


_HAS_PLACEHOLDER = "placeholder" in inspect.signature(st.dataframe).parameters


def table(frame: Any, key: str, whole: bool = False, **options: Any) -> None:
    """``st.dataframe`` inside a container with ``key``: tests find it by that key (``AppTest.get_by_key``,
    or the ``st-key-<key>`` CSS class in a browser), which a dataframe's own key does not give. ``whole``:
    tall enough for every row (no scrolling inside a short table). A missing value shows as ``MISSING``."""
    if whole:
        options["height"] = 35 * (len(frame) + 1) + 3
    if _HAS_PLACEHOLDER:  # a recent Streamlit's; older ones draw a grey None (pyproject allows them)
        options.setdefault("placeholder", MISSING)
    with st.container(key=key):
        st.dataframe(frame, hide_index=True, **options)
