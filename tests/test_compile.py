"""A DDP module run by ``torch.compile`` under ddlprof: no graph break and no Dynamo warning of
ddlprof's making, and the steps are still timed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import env, free_port

pytest.importorskip("torch")

STEPS = 8
JOB = """
import json, os, sys, tempfile
run_dir = tempfile.mkdtemp()
if sys.argv[1] == "ddlprof":
    os.environ.update(DDLPROF_RUN_DIR=run_dir, DDLPROF_TRACE_STEPS="0", DDLPROF_DISABLE="probe")
import torch
import torch.distributed as dist
from torch._dynamo.utils import counters
from torch.nn.parallel import DistributedDataParallel
from ddlprof.collectors.session import current_session, start_session

start_session()
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2], RANK="0", WORLD_SIZE="1")
dist.init_process_group("gloo")
layers = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
model = DistributedDataParallel(layers)
compiled = torch.compile(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(int(sys.argv[3])):
    compiled(torch.randn(8, 16)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
records = []
if current_session() is not None:
    current_session().close()
    with open(os.path.join(run_dir, "ranks", "rank-0.jsonl")) as f:
        records = [json.loads(line) for line in f]
dist.destroy_process_group()
print(json.dumps({"graph_breaks": sum(counters["graph_break"].values()), "records": records}))
"""


def _run(mode: str) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", JOB, mode, str(free_port()), str(STEPS)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


def test_compiled_ddp_has_no_graph_break_or_warning_of_ddlprofs_making():
    alone, _ = _run("alone")
    profiled, stderr = _run("ddlprof")
    assert profiled["graph_breaks"] == alone["graph_breaks"]
    assert "perf_counter" not in stderr and "ddlprof" not in stderr, stderr
    steps = [r for r in profiled["records"] if r["type"] == "step"]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1)) and all(s["step_ms"] > 0 for s in steps)
    warnings = [r for r in profiled["records"] if r["type"] == "warning" and r["collector"] == "comm"]
    assert len(warnings) == 1 and "torch.compile" in warnings[0]["reason"]
