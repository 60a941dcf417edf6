"""The package's layers import only downward, as the README's architecture paragraph says.

Every module of ``ddlprof/`` is read as text (nothing is imported) and each of its ``ddlprof``
imports, module-level and inside functions alike, is checked against the layer of both ends.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "ddlprof"

#: Lowest first. A module may import from its own part and from parts on lower steps; parts on one step
#: are peers and import nothing of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "console"),  # the shared error type; the console that output goes to
    ("runs",),  # the run directory format, its records and summary, the local store of runs
    ("collectors", "figures"),  # inside the training processes; plotly figures of runs and options
    ("profiler", "models"),  # wrapping, reports and analyses; features, datasets, stall models
    ("advisor",),  # catalog data and fetchers, and the decision
    ("dashboard",),  # the Streamlit app
    ("cli",),  # the command line
    ("__main__",),  # python -m ddlprof
)
#: ``ddlprof/__init__.py`` holds ``__version__``, which every layer may read, and ``mark_step``, which
#: hands over to the collectors' session when a training script calls it.
ROOT_MAY_IMPORT = ("collectors",)
#: The collectors run inside users' training processes: of ddlprof outside ``collectors/`` they import
#: only these modules (standard library only), and at module level nothing but the standard library
#: and ddlprof (torch and the rest inside functions, once the job has imported them).
COLLECTORS_MAY_IMPORT = ("ddlprof.runs.breakdown",)

STEP = {part: step for step, parts in enumerate(LAYERS) for part in parts}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from ... import`` (relative imports included)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if _is_package(importer) else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def ddlprof_imports(name: str) -> list[tuple[str, int]]:
    """(imported ddlprof module, line) for every import in module ``name``, inside functions too; ``from
    PACKAGE import NAME`` counts as importing the submodule ``PACKAGE.NAME`` when there is one."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(name, node)
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == "ddlprof" or target.startswith("ddlprof."):
                found.append((target, node.lineno))
    return found


def part(name: str) -> str:
    """The part of the package a module belongs to: ``ddlprof.advisor.catalog.aws`` -> ``advisor``;
    the root package is ``""``."""
    return name.split(".")[1] if "." in name else ""


def violations(imports: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Every import that goes up a layer or sideways to a peer, as 'file:line: importer imports target'."""
    out = []
    for importer, found in imports.items():
        src = part(importer)
        for target, line in found:
            dst = part(target)
            where = f"{MODULES[importer].relative_to(REPO)}:{line}: {importer} imports {target}"
            if src == dst or dst == "":
                continue
            if src == "":
                if dst not in ROOT_MAY_IMPORT:
                    out.append(f"{where} (the root package may import only {', '.join(ROOT_MAY_IMPORT)})")
                continue
            if src not in STEP or dst not in STEP:
                out.append(f"{where} (a part with no layer: add it to LAYERS and to the README)")
            elif STEP[dst] > STEP[src]:
                out.append(f"{where} ({src} is below {dst}: lower layers never import higher ones)")
            elif STEP[dst] == STEP[src]:
                out.append(f"{where} ({src} and {dst} are peers on one layer)")
    return sorted(out)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _all_imports() -> dict[str, list[tuple[str, int]]]:
    return {name: ddlprof_imports(name) for name in MODULES}


def test_every_part_has_a_layer():
    parts = {part(name) for name in MODULES} - {""}
    assert parts <= set(STEP), f"parts with no layer: {sorted(parts - set(STEP))}"


def test_layers_import_only_downward():
    found = violations(_all_imports())
    assert not found, "imports against the layering:\n" + "\n".join(found)


def test_a_planted_upward_import_is_named():
    """The check can fail: a runs module importing the advisor, as a function-local import would."""
    imports = _all_imports()
    imports["ddlprof.runs.summary"].append(("ddlprof.advisor.catalog", 7))
    assert violations(imports) == [
        "ddlprof/runs/summary.py:7: ddlprof.runs.summary imports ddlprof.advisor.catalog "
        "(runs is below advisor: lower layers never import higher ones)"
    ]


def test_collectors_import_little_and_only_the_standard_library_at_module_level():
    for name, found in _all_imports().items():
        if part(name) != "collectors":
            continue
        outside = {t for t, _ in found if part(t) not in ("collectors", "")} - set(COLLECTORS_MAY_IMPORT)
        assert not outside, f"{name} imports {sorted(outside)}"
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                tops = [(node.module or "").split(".")[0]]
            else:
                continue
            for top in tops:
                assert top == "ddlprof" or top in sys.stdlib_module_names, (
                    f"{name}:{node.lineno} imports {top} at module level"
                )


def _advisor_graph(collapse_subpackages: bool) -> dict[str, set[str]]:
    def node(name: str) -> str:
        parts = name.split(".")
        if collapse_subpackages and len(parts) > 3 and _is_package(".".join(parts[:3])):
            return ".".join(parts[:3])
        return name

    graph: dict[str, set[str]] = {}
    for name, found in _all_imports().items():
        if part(name) != "advisor":
            continue
        edges = graph.setdefault(node(name), set())
        edges.update(node(t) for t, _ in found if part(t) == "advisor" and node(t) != node(name))
    return graph


def test_no_import_cycles_in_the_advisor():
    """Neither between its modules nor between ``catalog/`` (data and fetchers) and the decision."""
    for collapse in (False, True):
        found = cycles(_advisor_graph(collapse_subpackages=collapse))
        assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_catalog_imports_nothing_of_the_decision():
    """``advisor/catalog/`` (data, fetchers, refresh) sits below the rest of the advisor."""
    catalog = "ddlprof.advisor.catalog"
    for name, found in _all_imports().items():
        if name.startswith(catalog):
            above = sorted(t for t, _ in found if part(t) == "advisor" and not t.startswith(catalog))
            assert not above, f"{name} imports {above}"


def test_a_planted_cycle_is_found():
    graph = _advisor_graph(collapse_subpackages=True)
    graph["ddlprof.advisor.catalog"].add("ddlprof.advisor.ranking")  # ranking imports the catalog
    assert any({"ddlprof.advisor.catalog", "ddlprof.advisor.ranking"} <= set(c) for c in cycles(graph))


def test_help_imports_nothing_heavy():
    """``ddlprof advise --help`` builds the whole parser: none of the heavy libraries on the way."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ddlprof", "advise", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    assert imported & {"torch", "streamlit", "plotly", "sklearn", "boto3", "botocore"} == set()
    assert "ddlprof" in imported and "--budget" in done.stdout
