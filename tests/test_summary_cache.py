"""summary.json as the dashboard's cache: used only while it is what a fresh summary would say."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import as_unprivileged, ddlprof
from dashboard_runs import real_run

from ddlprof.dashboard import data
from ddlprof.runs.rundir import load_run
from ddlprof.runs.summary import cached_summary, summarize, summary_path, write_summary_if_absent


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return real_run(tmp_path_factory.mktemp("cache") / "run", steps=12)


def _without_time(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "generated_unix"}


def test_wrap_leaves_the_summary_a_fresh_one_would_be(run):
    cached = cached_summary(run)
    assert cached is not None and cached["steps"]["warmup_auto"] is True
    assert _without_time(cached) == _without_time(json.loads(json.dumps(summarize([load_run(run)]))))


def test_the_dashboard_reads_the_cache_instead_of_the_ranks(run, tmp_path):
    copy = shutil.copytree(run, tmp_path / "run")
    path = summary_path(copy)
    marked = json.loads(path.read_text())
    marked["runs"], marked["job"]["step_ms"] = [str(copy)], 12345.0
    path.write_text(json.dumps(marked))
    assert data.load_summary(copy)["summary"]["job"]["step_ms"] == 12345.0


def test_a_copy_elsewhere_a_custom_warmup_or_newer_records_are_not_used(run, tmp_path):
    copy = shutil.copytree(run, tmp_path / "copy")
    assert cached_summary(copy) is None  # summary.json names the original directory
    fresh = data.load_summary(copy)["summary"]
    assert fresh["runs"] == [str(copy)]
    assert json.loads(summary_path(copy).read_text())["runs"] == [str(run)]  # not overwritten

    assert ddlprof("report", "--no-store", "--warmup", "3", str(copy)).returncode == 0
    custom = summary_path(copy).read_text()
    assert json.loads(custom)["steps"]["warmup_auto"] is False
    assert cached_summary(copy) is None
    data.load_summary(copy)
    assert summary_path(copy).read_text() == custom  # the report's own file stays as it was

    assert ddlprof("report", "--no-store", str(copy)).returncode == 0
    assert cached_summary(copy) is not None
    rank = copy / "ranks" / "rank-1.jsonl"
    later = summary_path(copy).stat().st_mtime_ns + 1_000_000_000
    os.utime(rank, ns=(later, later))  # the rank wrote more after the summary
    assert cached_summary(copy) is None


def test_garbage_in_summary_json_is_ignored(run, tmp_path):
    copy = shutil.copytree(run, tmp_path / "garbage")
    for text in ("{", "[]", '{"runs": "x"}', json.dumps({"runs": [str(copy)]})):
        summary_path(copy).write_text(text)
        assert cached_summary(copy) is None
    assert data.load_summary(copy)["summary"]["runs"] == [str(copy)]


def _summarise_read_only(copy) -> tuple[bool, list[str], bool]:
    return (
        write_summary_if_absent(copy, {"x": 1}),
        data.load_summary(copy)["summary"]["runs"],
        summary_path(copy).exists(),
    )


def test_a_read_only_run_is_summarised_without_a_cache(run, tmp_path):
    copy = shutil.copytree(run, tmp_path / "ro")
    summary_path(copy).unlink()
    copy.chmod(0o555)
    try:
        assert as_unprivileged(_summarise_read_only, copy) == (False, [str(copy)], False)
    finally:
        copy.chmod(0o755)
