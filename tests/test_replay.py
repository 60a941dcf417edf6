"""The replayed variant of ``ddlprof stalls --data`` (``collectors/replay.py``) on real DataLoader jobs:
after the kept batches no sample is fetched again, epochs keep their length, the batches come back
whole (dicts, lists, named tuples, pinned memory, an iterable dataset, workers or none) however the
loop edits the containers it got, and each replayed batch is counted in the step's record."""

from __future__ import annotations

import json
import sys
from collections import namedtuple

import pytest
import torch
from conftest import ddlprof, env

from ddlprof.collectors.config import REPLAY
from ddlprof.collectors.replay import Held, fresh

pytestmark = pytest.mark.e2e
KEEP = 3

JOB = """
import collections, json, sys, torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

Pair = collections.namedtuple("Pair", "x i")
workers, kind, calls = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def item(i):
    with open(calls, "a") as f:
        f.write(f"{i}\\n")
    x = torch.full((4,), float(i))
    return {"x": x, "i": i} if kind == "dict" else (x, i) if kind == "tuple" else Pair(x, i)

class Items(Dataset):
    def __len__(self):
        return 24
    def __getitem__(self, i):
        return item(i)

class Stream(IterableDataset):  # no length, 4 batches an epoch
    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        first, step = (info.id, info.num_workers) if info else (0, 1)
        return (item(i) for i in range(first, 8, step))

extra = {"persistent_workers": True} if workers else {}
data = Stream() if kind == "named" else Items()
loader = DataLoader(data, batch_size=2, num_workers=workers, pin_memory=True, **extra)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
epochs = []
for epoch in range(3):
    seen = []
    for batch in loader:
        x, i = (batch["x"], batch["i"]) if kind == "dict" else (batch[0], batch[1])
        assert torch.equal(x[:, 0], i.float()), (x, i)  # whole, and as it was made
        seen.append(i.tolist())
        if kind == "dict":
            batch["x"] = x * 0 - 1  # the loop puts its own tensor back into the batch
        elif kind == "tuple":
            batch[0] = x * 0 - 1
        else:
            assert type(batch).__name__ == "Pair"
        model(x).sum().backward()
        opt.step()
    epochs.append(seen)
print(json.dumps(epochs))
"""


def _run(tmp_path, workers: int, kind: str, replay: bool = True) -> tuple[list, int, list[dict]]:
    script, calls, run = tmp_path / "job.py", tmp_path / "calls", tmp_path / "run"
    script.write_text(JOB)
    environ = {**env(), **({REPLAY: str(KEEP if kind != "named" else 8)} if replay else {})}
    done = ddlprof(
        "wrap", "--out", str(run), sys.executable, str(script), str(workers), kind, str(calls), env=environ
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (run / "ranks" / "rank-0.jsonl").read_text().splitlines()]
    fetched = len(calls.read_text().split())
    return json.loads(done.stdout), fetched, [r for r in records if r["type"] == "step"]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", ["dict", "tuple"])
def test_after_the_kept_batches_nothing_is_fetched_and_epochs_keep_their_length(tmp_path, workers, kind):
    epochs, fetched, steps = _run(tmp_path, workers, kind)
    first = [[2 * b, 2 * b + 1] for b in range(KEEP)]
    assert [len(e) for e in epochs] == [12, 12, 12]  # len(loader) batches every epoch
    assert [b for e in epochs for b in e] == first * 12  # the kept batches, in turn
    # the kept samples, and with workers those already asked for when replay began (2 per worker)
    assert fetched == 2 * KEEP if workers == 0 else 2 * KEEP <= fetched <= 2 * (KEEP + 2 * workers)
    replayed = [s["loader"]["replayed"] for s in steps]
    assert replayed == [0] * KEEP + [1] * (36 - KEEP)  # one batch a step: counted where it came from memory


def test_an_iterable_dataset_with_no_length_replays_epochs_as_long_as_its_first(tmp_path):
    epochs, fetched, steps = _run(tmp_path, 2, "named")
    assert fetched == 8  # its first epoch, 4 batches of 2: fewer than the 8 it may keep
    assert [len(e) for e in epochs] == [4, 4, 4]
    assert sorted(epochs[1]) == sorted(epochs[0]) == sorted(epochs[2])
    assert sum(s["loader"]["replayed"] for s in steps) == 8


def test_without_the_variable_every_batch_is_fetched(tmp_path):
    epochs, fetched, steps = _run(tmp_path, 0, "dict", replay=False)
    assert fetched == 3 * 24 and sorted(b for e in epochs for p in e for b in p) == sorted(
        list(range(24)) * 3
    )
    assert not any(s["loader"]["replayed"] for s in steps)


def test_memory_held_is_capped_by_batches_and_by_bytes():
    batch = {"x": torch.zeros(256), "y": [torch.zeros(256)]}  # 2 KiB
    by_count = Held(limit=4)
    while not by_count.full:
        by_count.keep(batch)
    assert len(by_count.batches) == 4 and by_count.bytes == 4 * 2048
    by_bytes = Held(limit=100, max_bytes=5000)
    while not by_bytes.full:
        by_bytes.keep(batch)
    assert len(by_bytes.batches) == 3  # the batch that passes the cap is the last kept
    huge = Held(limit=100, max_bytes=100)
    huge.keep(batch)
    assert huge.full and len(huge.batches) == 1  # at least one, whatever its size


def test_a_replayed_batch_has_new_containers_around_the_same_tensors():
    pair = namedtuple("Pair", "x i")
    batch = {"a": [torch.ones(2), pair(torch.ones(1), 3)], "b": (torch.zeros(1),)}
    copy = fresh(batch)
    assert copy is not batch and copy["a"] is not batch["a"] and type(copy["a"][1]) is pair
    assert copy["a"][0] is batch["a"][0] and copy["b"][0] is batch["b"][0]
    copy["a"][0] = None
    assert batch["a"][0] is not None
