"""``ddlprof wrap`` on jobs whose training loop we did not write: a Hugging Face ``Trainer`` job and a
PyTorch Lightning job (``benchmarks/foreign/``, the jobs of the GPU overhead benchmark, here small and
on 2 gloo ranks). Each job times its own steps (``steptimer.py``, a callback of the framework), so
ddlprof's step time is checked against a clock it does not own; the frameworks drive the optimizer,
the DataLoader and DDP their own way (Lightning runs forward and backward inside
``optimizer.step(closure)``; the Trainer steps through accelerate's optimizer wrapper)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import REPO, ddlprof, env, summary, torchrun

pytestmark = pytest.mark.e2e

FOREIGN = REPO / "benchmarks" / "foreign"
SHIM = Path(__file__).parent / "foreign_job.py"
STEPS = 30
BATCH = 8


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _run(tmp_path: Path, script: str, *args: str, trace_steps: str = "0"):
    """The job wrapped, on 2 ranks; (completed process, run dir, the job's own figures of rank 0)."""
    out, own = tmp_path / "run", tmp_path / "steptimer.json"
    job_env = {**env(), "STEPTIMER_OUT": str(own)}
    job_env["PYTHONPATH"] = str(REPO)  # the shim imports ddlprof from this tree, as wrap's bootstrap does
    done = ddlprof(
        "wrap", "--out", str(out), "--trace-steps", trace_steps, "--",
        *torchrun(2), str(SHIM), str(FOREIGN / script), "--steps", str(STEPS), "--batch-size", str(BATCH),
        *args, env=job_env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done, out, json.loads(own.read_text())


def _records(run: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (run / "ranks" / f"rank-{rank}.jsonl").read_text().splitlines()]


def _check_steps_and_clock(run: Path, own: dict) -> dict:
    """Every rank recorded every optimizer step with the job's batch, no collector stopped, and
    ddlprof's mean step over the job's steady steps agrees with the job's own clock."""
    for rank in (0, 1):
        records = _records(run, rank)
        steps = [r for r in records if r["type"] == "step"]
        assert [s["step"] for s in steps] == list(range(1, STEPS + 1))
        assert {s["samples"] for s in steps} == {BATCH} and {s["forwards"] for s in steps} == {1}
        assert [r for r in records if r["type"] == "warning"] == []
        (workload,) = [r for r in records if r["type"] == "workload"]
        assert workload["precision"] == "fp32" and workload["backend"] == "gloo"
    # the job's clock: from the end of its step 20 to the end of the last (steptimer.py); ddlprof's
    # steady steps after a warm-up of 20 are the same ten steps, timed at the optimizer step
    result = summary(run, "--warmup", str(own["warmup"]))
    rank0 = next(r for r in result["ranks"] if r["rank"] == 0)
    assert result["steps"]["steady_per_rank"] == STEPS - own["warmup"]
    assert rank0["step_ms"] == pytest.approx(own["ms_per_step"], rel=0.15), (rank0, own)
    assert result["job"]["interconnect_stall_ms"] is not None  # DDP's all-reduce was timed
    return result


@pytest.mark.skipif(bool(_missing("transformers", "accelerate")), reason="needs transformers and accelerate")
def test_hugging_face_trainer_job(tmp_path):
    done, run, own = _run(tmp_path, "hf_trainer.py", "--tiny", trace_steps="6-8")
    assert "train_runtime" in done.stdout  # the job's own output passes through
    result = _check_steps_and_clock(run, own)
    (workload,) = [r for r in _records(run, 0) if r["type"] == "workload"]
    # the Trainer builds DDP itself, with its default find_unused_parameters=True, which BERT does not
    # need: DDP found nothing unused, and the report says to turn the search off
    assert workload["module"] == "BertForSequenceClassification" and workload["find_unused_parameters"]
    assert workload["unused_parameter_bytes"] == 0
    rules = [r["rule"] for r in result["diagnosis"]["recommendations"]]
    assert "unused_search" in rules
    assert len(list((run / "traces").rglob("*.pt.trace.json.gz"))) == 2  # Kineto ran inside the Trainer
    overhead = result["ddlprof_overhead"]
    assert overhead["own_ms_per_step"] > 0 and overhead["trace_window_s"] > 0


@pytest.mark.skipif(bool(_missing("lightning")), reason="needs lightning")
def test_lightning_job(tmp_path):
    done, run, own = _run(
        tmp_path, "lightning_job.py", "--model", "mlp", "--image-size", "16", "--workers", "1"
    )
    assert "max_steps=30" in done.stdout + done.stderr  # Lightning's own last word passes through
    _check_steps_and_clock(run, own)
    for rank in (0, 1):
        steps = [r for r in _records(run, rank) if r["type"] == "step"][1:]
        # one worker made every batch; the training process read its cost from the worker's ring
        assert all(s["loader"]["workers"] == 1 and s["loader"]["uncosted"] == 0 for s in steps)
        assert all(s["comm"]["clock"] == "cpu" and s["comm"]["exposed_ms"] >= 0 for s in steps)
