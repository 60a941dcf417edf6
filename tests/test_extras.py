"""The light install: the core declares no torch and none of the heavy libraries, the core commands
run without the extras, and a command whose extra is missing says which one in one line.

"Without" here is ``tests/without.py``: the command runs in a fresh interpreter in which importing
those modules fails as it does where they are not installed (the wrapped job's own processes, which
are the job's interpreter, keep their torch).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

import pytest
from conftest import EXAMPLE, REPO, env, torchrun
from dashboard_runs import straggler_run

from ddlprof.errors import DdlprofError, MissingDependency, install_hint, require

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
WITHOUT = REPO / "tests" / "without.py"

#: Never in the core: torch and what pins one, and the libraries of the extras.
HEAVY = {
    "torch",
    "torchvision",
    "transformers",
    "streamlit",
    "plotly",
    "boto3",
    "scikit-learn",
    "torch-tb-profiler",
}
#: What each extra must bring (pip names).
EXTRAS = {
    "html": {"plotly"},
    "dashboard": {"streamlit", "plotly", "scikit-learn", "jsonschema"},  # jsonschema: cached summaries
    "cloud": {"boto3"},
    "models": {"torchvision", "transformers", "scikit-learn"},
    "tensorboard": {"torch-tb-profiler"},
}
#: Import names of everything outside the core (torch included, and pandas' optional pyarrow).
NOT_CORE = (
    "torch,torchvision,transformers,timm,sklearn,scipy,plotly,streamlit,boto3,botocore,"
    "torch_tb_profiler,tensorboard,pyarrow"
)


def _name(requirement: str) -> str:
    """The project name of a PEP 508 requirement, normalised (``scikit_learn>=1`` -> scikit-learn)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[._-]+", "-", match[1]).lower()


def _extras_of(requirement: str) -> set[str]:
    match = re.match(r"\s*[A-Za-z0-9._-]+\[([^\]]*)\]", requirement)
    return {e.strip() for e in match[1].split(",")} if match else set()


def _expanded(extra: str) -> set[str]:
    """The project names an extra brings, following ``ddlprof[...]`` references."""
    names: set[str] = set()
    for requirement in PYPROJECT["project"]["optional-dependencies"][extra]:
        if _name(requirement) == "ddlprof":
            for inner in _extras_of(requirement):
                names |= _expanded(inner)
        else:
            names.add(_name(requirement))
    return names


def test_the_core_declares_no_torch_and_no_heavy_library():
    core = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert core & HEAVY == set(), f"in the core: {sorted(core & HEAVY)}"
    assert core == {"nvidia-ml-py", "rich", "ijson", "pandas", "psutil"}


def test_each_extra_brings_what_its_commands_import():
    optional = PYPROJECT["project"]["optional-dependencies"]
    for extra, needed in EXTRAS.items():
        assert needed <= _expanded(extra), f"[{extra}] lacks {sorted(needed - _expanded(extra))}"
        assert "torch" not in _expanded(extra), f"[{extra}] names torch itself"
    assert _expanded("all") == set().union(*EXTRAS.values())
    assert _expanded("test") >= _expanded("all") | {"pytest", "pytest-timeout", "ruff"}
    assert set(optional) == {*EXTRAS, "all", "test"}
    # every extra a message can name exists, and the messages name only those
    from ddlprof.errors import EXTRAS as NAMED

    assert set(NAMED) <= set(optional)


def test_pip_would_add_no_torch_and_no_heavy_library():
    """pip's own resolver on the package's real metadata, as for an empty environment."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            "-",
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = {_name(item["metadata"]["name"]) for item in json.loads(done.stdout)["install"]}
    assert names & (HEAVY | {"numpy"}) == {"numpy"}, f"pip would install {sorted(names & HEAVY)}"
    assert {"ddlprof", "pandas", "rich", "ijson", "nvidia-ml-py"} <= names
    assert not any(name.startswith(("nvidia-cu", "nvidia-nccl", "triton")) for name in names)


PREDICT = [
    "model",
    "predict",
    "--model",
    "resnet50",
    "--batch-per-gpu",
    "32",
    "--gpus-per-node",
    "2",
    "--gpu",
    "H200",
]


def _without(modules: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(WITHOUT), modules, *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        cwd=REPO,
    )


MISSING = [
    ("streamlit", ["dashboard"], "ddlprof dashboard: error: ddlprof dashboard needs the dashboard extra"),
    ("plotly", ["report", "--html", "r.html", "no-such-run"], "ddlprof report --html needs the html extra"),
    ("boto3", ["catalog", "refresh", "aws"], "ddlprof catalog refresh aws needs the cloud extra"),
    ("sklearn", ["model", "fit"], "fitting the stall models needs the models extra"),
    ("sklearn", ["model", "evaluate"], "cross-validating the stall models needs the models extra"),
    ("torchvision", ["model", "features", "resnet50"], "'resnet50' needs the models extra"),
    ("transformers", ["model", "features", "bert-base"], "'bert-base' needs the models extra"),
]


@pytest.mark.parametrize(("module", "args", "says"), MISSING, ids=[" ".join(a) for _, a, _ in MISSING])
def test_a_missing_extra_is_one_line_naming_it(module, args, says):
    done = _without(module, *args)
    extra = re.search(r"needs the (\w+) extra", says)[1]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert says in lines[0] and f"pip install 'ddlprof[{extra}]'" in lines[0], lines[0]
    assert lines[0].endswith(" is not installed)"), lines[0]


@pytest.mark.parametrize(
    "args",
    [["model", "features", "resnet50"], ["stalls", "--", "torchrun", "--nproc_per_node=2", str(EXAMPLE)]],
    ids=["model features", "stalls"],
)
def test_no_torch_is_one_line(args):
    done = _without("torch", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs PyTorch: torch is not installed" in lines[0], done.stderr
    assert "ddlprof never installs one" in lines[0]


def test_the_core_commands_run_without_any_extra_or_torch(tmp_path):
    """wrap (its processes keep the job's torch), report, analyze, trace --merge, advise, model
    predict and catalog list, each in an interpreter where nothing outside the core imports."""
    run = tmp_path / "run"
    done = _without(
        NOT_CORE,
        "wrap",
        "--out",
        str(run),
        "--trace-steps",
        "6-8",
        "--",
        *torchrun(2),
        str(EXAMPLE),
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "steady steps: step" in done.stderr
    checks = [
        (["report", str(run)], "wrote"),
        (["report", "--json", str(straggler_run(tmp_path / "gpu-run"))], '"pcie_rx_mb_per_s"'),  # pandas
        (["analyze", str(run / "traces")], "rank"),
        (["trace", str(run), "--merge", str(tmp_path / "merged.json.gz")], "merged.json.gz"),
        (["advise", "--model", "resnet50", "--budget", "100", "--top", "3"], "Top choice:"),
        (PREDICT, "step"),
        (["catalog", "list", "--cloud", "aws"], "p4d.24xlarge"),
    ]
    for args, expected in checks:
        done = _without(NOT_CORE, *args)
        assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
        assert expected in done.stdout, f"{args}: {done.stdout[-2000:]}"
        assert "Traceback" not in done.stderr


def test_advise_without_scikit_learn_uses_the_shipped_fit_and_says_so(monkeypatch):
    """Reported runs that would change the fit, and no scikit-learn to refit: the shipped fit, with a
    warning naming ddlprof[models]; without such runs nothing is said."""
    import pandas as pd

    from ddlprof.advisor.ranking import advise_result
    from ddlprof.models import dataset, registry

    for module in ("sklearn", "sklearn.linear_model", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, module, None)
    plain, _ = advise_result(model="resnet50", budget=100.0)
    assert not any("scikit-learn" in w for w in plain.warnings)

    mine = dataset.load_dataset().iloc[[0]].assign(model="MyNet", source="reported")
    monkeypatch.setattr(dataset, "store_rows", lambda: (pd.concat([mine]), "1 reported run(s)"))
    fitted = registry.load_models()
    assert fitted.record == registry.shipped_record() and not fitted.refitted
    assert fitted.fallback and "1 usable reported run(s)" in fitted.fallback
    assert install_hint("models") in fitted.fallback
    advice, result = advise_result(model="resnet50", budget=100.0)
    assert fitted.fallback in advice.warnings
    assert [o["usd_per_million_samples"] for o in result["options"]] == [
        o["usd_per_million_samples"] for o in advise_result(model="resnet50", budget=100.0)[1]["options"]
    ]

    # a shipped fit of another dataset cannot stand in: the one-line error instead
    monkeypatch.setattr(registry, "shipped_record", lambda: {"stamp": {"format": "other"}})
    with pytest.raises(MissingDependency, match=re.escape(install_hint("models"))):
        registry.load_models()


def test_require_says_why_in_one_line(tmp_path, monkeypatch):
    broken = "raise ImportError('libfoo.so: cannot open shared object')\n"
    (tmp_path / "broken_extra_lib.py").write_text(broken)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependency) as caught:
        require("broken_extra_lib", "cloud", "the thing")
    text = str(caught.value)
    assert "\n" not in text and isinstance(caught.value, DdlprofError)
    assert text == (
        "the thing needs the cloud extra: pip install 'ddlprof[cloud]' "
        "(import broken_extra_lib failed: ImportError: libfoo.so: cannot open shared object)"
    )
    assert require("json", "cloud", "the thing").dumps([1]) == "[1]"
    assert require("json", "cloud", "the thing", import_it=False) is None
    with pytest.raises(MissingDependency, match=r"\(no_such_module_xyz is not installed\)$"):
        require("no_such_module_xyz", "html", "x", import_it=False)
    with pytest.raises(ValueError, match="no such extra"):
        install_hint("gpu")


@pytest.mark.parametrize("version, too_old", [("1.0.0", True), ("1.51.9", True), ("999.0", False)])
def test_dashboard_refuses_a_streamlit_older_than_its_floor(tmp_path, monkeypatch, version, too_old):
    """An old Streamlit imports and then draws an empty page in its own process: the floor that
    pyproject.toml gives the dashboard extra is checked before it starts."""
    dist = tmp_path / f"streamlit-{version}.dist-info"  # found first on the path, as an older install
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: streamlit\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    if too_old:
        with pytest.raises(MissingDependency) as caught:
            require("streamlit", "dashboard", "ddlprof dashboard", import_it=False)
        assert str(caught.value) == (
            f"ddlprof dashboard needs streamlit >= 1.52 (installed: {version}): "
            "pip install -U 'streamlit>=1.52'"
        )
    else:
        assert require("streamlit", "dashboard", "ddlprof dashboard", import_it=False) is None
