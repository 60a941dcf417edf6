"""The run directory: what ``ddlprof wrap`` writes and ``ddlprof report`` reads.

    manifest.json          the run: schema version, id, command, launcher, nodes expected
    nodes/<node>.json      one per node (per ``ddlprof wrap``): host, hardware, environment, start/end,
                           exit status, GPU sampling
    ranks/rank-<k>.jsonl   one record a line per rank: a ``rank`` header, ``step`` records, ``workload``,
                           ``probe``, ``trace``, ``warning`` and a final ``end`` record
    gpu/<host>.csv         NVML samples, one file per host
    traces/<run>/          Kineto traces in torch-tb-profiler's layout
    summary.json           written by ``ddlprof report``; left by ``ddlprof wrap`` (the dashboard's cache)

Several nodes may share one directory (``--out`` on a shared file system): the first node creates
the manifest, the others join a manifest for the same command.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddlprof.errors import DdlprofError
from ddlprof.runs import records

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "ddlprof.run"
SCHEMA_VERSION = 1
SOURCE_PARTS = ("nodes", "ranks", "gpu")  # the folders whose files a summary is computed from
_RANK_FILE = re.compile(r"^rank-(\d+)\.jsonl$")
_NODE_RANK_FLAGS = ("--node_rank", "--node-rank")
_MANIFEST_TMP = re.compile(rf"^\.{re.escape(MANIFEST)}\.\d+\.tmp$")  # write_atomic's, while it links


def source_files(path: Path) -> list[tuple[str, int, int]]:
    """(relative name, size, mtime in ns) of the manifest and of every file a summary reads."""
    entries = []
    for folder in (path, *(path / part for part in SOURCE_PARTS)):
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if folder == path and entry.name != MANIFEST:
                        continue
                    try:
                        info = entry.stat()
                    except OSError:
                        continue
                    if entry.is_file():
                        entries.append((os.path.relpath(entry.path, path), info.st_size, info.st_mtime_ns))
        except OSError:
            continue
    return sorted(entries)


def job_key(command: list[str]) -> list[str]:
    """The command with its node rank taken out: equal on every node of one multi-node job."""
    key, skip = [], False
    for arg in command:
        if skip:
            skip = False
            continue
        if arg in _NODE_RANK_FLAGS:
            skip = True
            continue
        if arg.startswith(tuple(f"{flag}=" for flag in _NODE_RANK_FLAGS)):
            continue
        key.append(arg)
    return key


def write_atomic(path: Path, text: str, *, exclusive: bool = False) -> bool:
    """Write via a temporary file beside ``path``, so a failure never leaves half a file behind; with
    ``exclusive`` return False instead of replacing a file that exists (an atomic create-if-absent:
    of several processes writing at once, exactly one gets True)."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic create-if-absent with the full content
        except FileExistsError:
            return False
        return True
    except OSError as exc:
        raise DdlprofError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def check_out_folder(out: Path) -> None:
    """Refuse, in one line and making nothing, an ``--out`` for the runs of `share` or `stalls` that is
    a file, a directory with something in it, or a path under a file."""
    if out.exists():
        if not out.is_dir():
            raise DdlprofError(f"--out {out}: exists and is not a directory")
        if any(out.iterdir()):
            raise DdlprofError(f"--out {out}: not empty; choose a new directory")
        return
    above = next(parent for parent in out.absolute().parents if parent.exists())
    if not above.is_dir():
        raise DdlprofError(f"--out {out}: {above} is not a directory")


def make_out_folder(out: Path) -> None:
    """:func:`check_out_folder`, then make it (a failure to is one line too)."""
    check_out_folder(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DdlprofError(f"--out {out}: cannot make the directory ({exc.strerror})") from None


def create_or_join(out: Path, manifest: dict[str, Any], multi_node: bool) -> bool:
    """Make ``out`` the run directory of this job; True when this node joined an existing run.

    Never overwrites: a directory holding another run, or anything else, is refused; a directory that
    cannot be made or written is one line, before the job starts.
    """
    try:
        if out.exists() and not out.is_dir():
            raise DdlprofError(f"--out {out}: exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        # One listing, not two looks: another node of this job links the manifest before it adds
        # anything else but the manifest's temporary file, so a listing that holds anything else holds
        # the manifest too, whenever it is taken.
        entries = [name for name in os.listdir(out) if not _MANIFEST_TMP.match(name)]
    except OSError as exc:
        raise DdlprofError(f"--out {out}: cannot make the run directory ({exc.strerror})") from None
    if entries and MANIFEST not in entries:
        raise DdlprofError(f"--out {out}: not empty and not a ddlprof run; choose a new directory")
    joined = not write_atomic(out / MANIFEST, json_text(manifest), exclusive=True)
    if joined:
        existing = read_manifest(out)
        if not (multi_node and existing.get("job_key") == manifest["job_key"]):
            raise DdlprofError(
                f"--out {out}: already holds a run ({existing.get('run_id')}); choose a new directory"
            )
    try:
        for sub in ("ranks", "nodes", "gpu", "traces"):
            (out / sub).mkdir(exist_ok=True)
    except OSError as exc:
        raise DdlprofError(f"--out {out}: cannot make {sub}/ in the run directory ({exc.strerror})") from None
    return joined


def claim_node(out: Path, node: dict[str, Any]) -> None:
    """Write the node's record if no node of that name has one: two wraps of one node into one run
    directory (started together or one after the other) would mix their ranks' files."""
    if not write_atomic(out / "nodes" / f"{node['node_id']}.json", json_text(node), exclusive=True):
        raise DdlprofError(
            f"--out {out}: node {node['node_id']} already ran or runs in this run directory "
            "(give each node its own --node_rank, or choose a new directory)"
        )


def write_node(out: Path, node: dict[str, Any]) -> Path:
    path = out / "nodes" / f"{node['node_id']}.json"
    write_atomic(path, json_text(node))
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    try:
        data = records.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DdlprofError(not_a_run(path)) from None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DdlprofError(f"{file}: unreadable manifest ({_short(exc)})") from None
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
        raise DdlprofError(f"{file}: not a ddlprof manifest")
    for name, default in (("schema_version", 0), ("nnodes", None)):
        value = data.get(name, default)
        if value is not None and not records.number(value, 0, records.MAX_WORLD_SIZE, integer=True):
            raise DdlprofError(f"{file}: manifest field {name} must be an integer, not {_short(value)}")
    if (data.get("schema_version") or 0) > SCHEMA_VERSION:
        raise DdlprofError(f"{file}: written by a newer ddlprof (schema {data['schema_version']}); upgrade")
    return data


#: The outputs of ``ddlprof stalls`` and ``ddlprof share``, which hold runs but are none: their result
#: file, the pattern of their runs' folders (``profiler/differential.py``: ``OUT/<variant>/r<repeat>``;
#: ``profiler/share.py``: ``OUT/<mode>/k<K>/copy<i>``) and the folders to suggest first (the job as
#: launched: ``full``, ``one_node`` on a single node, ``launched`` for ``stalls --data``).
_OUTPUTS = (
    ("ddlprof stalls", "stalls.json", (r"[^/]+", r"r\d+"), ("full", "one_node", "launched")),
    ("ddlprof share", "share.json", (r"[^/]+", r"k\d+", r"copy\d+"), ()),
)


def not_a_run(path: Path) -> str:
    """Why ``path`` is no run directory, in one line that names what it is where it is a ``ddlprof
    stalls`` or ``ddlprof share`` output, or a folder with runs below it, and a run to report instead."""
    runs = _runs_below(path)
    for command, result, pattern, first in _OUTPUTS:
        theirs = [run for run in runs if _laid_out(run, pattern)]
        if not (path / result).is_file() and not theirs:
            continue
        theirs.sort(key=lambda run: (first.index(run.parts[0]) if run.parts[0] in first else len(first), run))
        example = f"e.g. {path / theirs[0]}" if theirs else "none has finished"
        found = (
            f"its result is {path / result}" if (path / result).is_file() else f"no {result} (not finished?)"
        )
        return f"{path}: a {command} output, not a run: report one of its runs, {example}; {found}"
    if runs:
        shown = ", ".join(str(path / run) for run in runs[:3]) + (" ..." if len(runs) > 3 else "")
        return f"{path}: not a ddlprof run directory (no {MANIFEST}); runs below it: {shown}"
    return f"{path}: not a ddlprof run directory (no {MANIFEST})"


def _laid_out(run: Path, pattern: tuple[str, ...]) -> bool:
    return len(run.parts) == len(pattern) and all(map(re.fullmatch, pattern, run.parts))


def _runs_below(path: Path, depth: int = 3) -> list[Path]:
    """Run directories (a manifest in them) up to ``depth`` folders below ``path``, relative to it."""
    found = []
    for level in range(1, depth + 1):
        try:
            found += [m.parent.relative_to(path) for m in path.glob("/".join(["*"] * level + [MANIFEST]))]
        except OSError:
            break
    return sorted(found)


def _short(value: object) -> str:
    """A value or an error in a few words, for an error line."""
    text = str(value) if isinstance(value, BaseException) else json.dumps(value)
    return " ".join(text.split())[:120]


@dataclass
class RankLog:
    """Everything one rank wrote, read leniently: a torn last line (the rank was killed) is skipped, and
    so is a record with a bad field (``bad_records``); a file with no rank header is kept with its
    ``problem`` and nothing else, so that the other ranks still report."""

    rank: int
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    workload: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    traces: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False
    torn_lines: int = 0
    bad_records: int = 0
    problem: str | None = None


def read_rank(path: Path, rank: int) -> RankLog:
    log = RankLog(rank=rank, path=path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DdlprofError(f"{path}: unreadable ({exc.strerror or exc})") from None
    for line in lines:
        try:
            record = records.loads(line)
        except ValueError:  # a torn line, or a number JSON does not allow
            log.torn_lines += 1
            continue
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == "rank":
            records.check_header(record, path)
            log.meta = record
        elif kind == "step" and records.good_step(record):
            log.steps.append(record)
        elif kind == "workload":
            log.workload = record
        elif kind == "probe" and records.good_probe(record):
            log.probe = record
        elif kind == "trace" and records.good_trace(record):
            log.traces.append(record)
        elif kind == "warning" and records.good_warning(record):
            log.warnings.append(record)
        elif kind == "end":
            log.ended = True
        elif kind in ("step", "probe", "trace", "warning"):
            log.bad_records += 1
    if not log.meta:
        size = path.stat().st_size if path.exists() else 0
        return RankLog(rank=rank, path=path, problem=f"{path}: no rank header ({size} bytes): not read")
    return log


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]
    nodes: list[dict[str, Any]]
    ranks: list[RankLog]


def check_run_dir(path: Path) -> None:
    """A ``DdlprofError`` unless ``path`` is a directory: what every command says first of a missing run."""
    if not path.exists():
        raise DdlprofError(f"{path}: no such directory")
    if not path.is_dir():
        raise DdlprofError(f"{path}: not a directory")


def load_run(path: Path) -> Run:
    check_run_dir(path)
    manifest = read_manifest(path)
    nodes = []
    for file in sorted((path / "nodes").glob("*.json")):
        try:
            node = records.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DdlprofError(f"{file}: unreadable node record ({_short(exc)})") from None
        if not isinstance(node, dict):
            raise DdlprofError(f"{file}: not a node record (a JSON object expected)")
        nodes.append(node)
    ranks = []
    for file in sorted((path / "ranks").glob("rank-*.jsonl")):
        match = _RANK_FILE.match(file.name)
        if match:
            ranks.append(read_rank(file, int(match.group(1))))
    return Run(path=path, manifest=manifest, nodes=nodes, ranks=ranks)
