"""The data stall split into fetch (blocked), prep (CPU) and other, on real DataLoader jobs whose items
sleep a known time and burn a known CPU time, and the worker-side timing's safety: the job's own
``worker_init_fn`` runs, the loader is left as it was, and what the workers return is untouched.

Per-batch costs are compared with the injected times (a sleep is blocked time, a CPU burn is CPU
time, at any load); the step's stall is then split in their proportion, so its parts add up to it.
Tolerance: 15% of the step, as issue 20 states it, and never less than 1 ms (a 2-core machine busy
with other work wakes a sleeping thread a little late).
"""

from __future__ import annotations

import sys

import pytest
from conftest import ddlprof, summary

from ddlprof.runs.breakdown import data_split

pytestmark = pytest.mark.e2e
SLEEP_MS, BURN_MS, BATCH = 3.0, 2.0, 2

JOB = """
import sys, time, torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

SLEEP_MS, BURN_MS = {sleep}, {burn}

def item(i):
    time.sleep(SLEEP_MS / 1e3)
    end = time.thread_time() + BURN_MS / 1e3
    while time.thread_time() < end:
        pass
    return {{"x": torch.full((4,), float(i)), "i": i}}

class Items(Dataset):
    def __len__(self):
        return 24
    def __getitem__(self, i):
        return item(i)

class Stream(IterableDataset):
    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        first, step = (info.id, info.num_workers) if info else (0, 1)
        return (item(i) for i in range(first, 24, step))

def mark(worker_id):
    open(sys.argv[3] + f"/init-{{worker_id}}", "w").close()

def main():
    workers, kind = int(sys.argv[1]), sys.argv[2]
    extra = {{"persistent_workers": True, "worker_init_fn": mark}} if workers else {{}}
    if kind == "spawn":
        extra["multiprocessing_context"] = "spawn"
    data = Stream() if kind == "iterable" else Items()
    loader = DataLoader(data, batch_size={batch}, num_workers=workers, **extra)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    for epoch in range(2):
        for batch in loader:
            seen += batch["i"].tolist()
            assert torch.equal(batch["x"][:, 0], batch["i"].float())  # untouched
            model(batch["x"]).sum().backward()
            opt.step()
    assert loader.worker_init_fn is (mark if workers else None)
    print(len(seen), sorted(seen) == sorted(list(range(24)) * 2))

if __name__ == "__main__":
    main()
"""


def _job(tmp_path, workers: int, kind: str = "map") -> dict:
    script = tmp_path / "job.py"
    script.write_text(JOB.format(sleep=SLEEP_MS, burn=BURN_MS, batch=BATCH))
    run = tmp_path / f"r-{workers}-{kind}"
    done = ddlprof("wrap", "--out", str(run), sys.executable, str(script), str(workers), kind, str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "48 True"  # every sample, once per epoch, as without ddlprof
    if workers:
        assert sorted(p.name for p in tmp_path.glob("init-*")) == [f"init-{w}" for w in range(workers)]
    return summary(str(run))


@pytest.mark.parametrize("workers", [0, 2, 4])
def test_batch_costs_match_the_injected_sleep_and_cpu_and_the_split_adds_up(tmp_path, workers):
    result = _job(tmp_path, workers)
    rank = result["ranks"][0]
    loader, step = rank["loader"], result["job"]["step_ms"]
    tolerance = max(1.0, 0.15 * step)
    assert loader["workers"] == workers
    blocked = loader["batch_ms"] - loader["batch_cpu_ms"] - loader["batch_cpu_wait_ms"]
    assert abs(blocked - BATCH * SLEEP_MS) <= tolerance, loader
    assert abs(loader["batch_cpu_ms"] - BATCH * BURN_MS) <= tolerance, loader
    parts = [result["job"][k] for k in ("data_fetch_ms", "data_prep_ms", "data_other_ms")]
    assert sum(parts) == pytest.approx(result["job"]["data_stall_ms"], abs=1e-6)
    if workers == 0:  # the loop makes every batch itself: its stall is the batch, fetch and prep
        assert abs(result["job"]["data_fetch_ms"] - BATCH * SLEEP_MS) <= tolerance, result["job"]
        assert result["job"]["data_prep_ms"] >= BATCH * BURN_MS - tolerance, result["job"]


@pytest.mark.parametrize("kind", ["iterable", "spawn"])
def test_iterable_datasets_and_spawned_workers_are_timed_too(tmp_path, kind):
    loader = _job(tmp_path, 2, kind)["ranks"][0]["loader"]
    assert loader is not None and loader["workers"] == 2
    assert abs(loader["batch_cpu_ms"] - BATCH * BURN_MS) <= 1.0, loader


def test_the_split_follows_the_producers_time_and_books_the_excess_as_other():
    loader = {"batches": 1, "uncosted": 0, "workers": 2, "wall_ms": 10.0, "cpu_ms": 3.0, "cpu_wait_ms": 1.0}
    assert data_split(5.0, loader) == pytest.approx(
        {"data_fetch_ms": 3.0, "data_prep_ms": 2.0, "data_other_ms": 0.0}
    )
    assert data_split(14.0, loader) == pytest.approx(
        {"data_fetch_ms": 6.0, "data_prep_ms": 4.0, "data_other_ms": 4.0}
    )
    assert set(data_split(5.0, {**loader, "uncosted": 1}).values()) == {None}
    assert set(data_split(5.0, None).values()) == {None}


def test_records_with_a_bad_loader_field_are_skipped():
    from ddlprof.runs.records import good_step

    step = {"step": 1, "step_ms": 10.0, "loader": {"batches": 1, "wall_ms": float("nan")}}
    assert not good_step(step)
    assert good_step({**step, "loader": {"batches": 1, "wall_ms": 2.0}})
    assert not good_step({**step, "loader": "x"})


def test_the_advised_num_workers_removes_the_stall_as_predicted(wrapped):
    """Acting on the advice: a job with one worker whose batches take 8 x 3 ms of sleep to make, more
    than the rest of its step, is told how many workers hide the loading; run again with them, its data
    stall and its step fall by the predicted saving (the stall, less what no worker explains). Tolerance
    0.6x to 1.4x of the prediction, as in ``test_e2e_diagnosis.py``: other work on the two cores moves a
    step by a few ms from run to run, the saving here is over 15 ms. One rank: two ranks with one
    worker each fell into step with each other on this machine (one waited for its batch, the other
    for it in the all-reduce), and the diagnosis named a straggler instead."""
    slow = ("--steps", "20", "--batch-size", "8", "--data-delay-ms", "3")

    def run(name: str, workers: int) -> dict:
        done, out = wrapped(*slow, "--workers", str(workers), name=name, nproc=1)
        assert done.returncode == 0, done.stderr
        return summary(str(out))

    before = run("one-worker", 1)
    top = before["diagnosis"]["recommendations"][0]
    advised = top["change"]["num_workers"]
    assert top["rule"] == "input_bound" and advised > 1, before["diagnosis"]
    assert top["action"].startswith(f"fetch-bound: raise num_workers from 1 to {advised}"), top
    after = run("advised", advised)
    stall_fell = before["job"]["data_stall_ms"] - after["job"]["data_stall_ms"]
    step_fell = before["job"]["step_ms"] - after["job"]["step_ms"]
    print(
        f"advised {advised} workers: stall fell {stall_fell:.1f} ms, step {step_fell:.1f}, "
        f"predicted {top['saving_ms']:.1f}"
    )
    assert 0.6 * top["saving_ms"] <= stall_fell <= 1.4 * top["saving_ms"], (before["job"], after["job"], top)
    assert 0.6 * top["saving_ms"] <= step_fell <= 1.4 * top["saving_ms"], (before["job"], after["job"], top)
