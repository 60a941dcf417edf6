"""``ddlprof stalls --emulate-link``: emulated nodes in network namespaces joined by links shaped with
tc. The links are built, shaped and reached as asked; nothing (namespace, veth, qdisc, process) is
left behind, whether the run ends, fails, is interrupted or cannot start; and the network stall
follows the link's rate as the ring all-reduce cost model says."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import EXAMPLE, ddlprof, drop_capabilities, env, summary

from ddlprof.errors import DdlprofError
from ddlprof.profiler import netem
from ddlprof.runs.breakdown import ring_factor

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("tc") is None,
    reason="needs root and iproute2 (CI and the development machine run as root with both)",
)


def _ours(pid: int) -> list[str]:
    """The network namespaces that ddlprof process ``pid`` made and that still exist."""
    return [name for name in netem.namespaces() if name.startswith(f"{netem.PREFIX}-{pid}-")]


def _host_interfaces() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def _qdiscs(node: netem.Node) -> str:
    argv = ["tc", "-n", node.netns, "qdisc", "show", "dev", node.interface]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize(
    "text, rate, delay",
    [("2gbit", 2e9, 0.0), ("500mbit,1ms", 5e8, 1e-3), ("1.5Gbit, 250us", 1.5e9, 2.5e-4), ("10gbit", 1e10, 0)],
)
def test_link_parses(text, rate, delay):
    link = netem.parse_link(text)
    assert link.rate_bps == pytest.approx(rate) and link.delay_s == pytest.approx(delay)


@pytest.mark.parametrize(
    "text", ["2gbps", "2GB", "fast", "2gbit,1", "2gbit,1ms,3", "1bit", "0gbit", "1gbit,20s"]
)
def test_a_bad_link_is_refused(text):
    with pytest.raises(DdlprofError, match="--emulate-link"):
        netem.parse_link(text)


@needs_root
@pytest.mark.parametrize("nodes", [2, 3])
def test_the_network_is_built_shaped_and_removed(nodes):
    with netem.emulated_network(nodes, netem.Link(2e9)) as built:
        assert len(_ours(os.getpid())) == nodes + (nodes > 2)  # a hub namespace holds the bridge
        for node in built:
            assert "tbf" in _qdiscs(node) and "rate 2Gbit" in _qdiscs(node)
            assert node.interface not in _host_interfaces()  # only inside the namespaces
        for a in built:
            for b in built:
                route = ["ip", "-n", a.netns, "route", "get", b.address]
                assert f"dev {'lo' if a is b else a.interface}" in subprocess.check_output(route, text=True)
    assert _ours(os.getpid()) == []
    assert f"dp{os.getpid()}n" not in _host_interfaces()


SENDER = """
import socket, sys, time
sock = socket.create_connection((sys.argv[1], 5555))
start = time.perf_counter()
sock.sendall(bytes(int(sys.argv[2])))
sock.shutdown(socket.SHUT_WR)
sock.recv(1)
print(time.perf_counter() - start)
"""
RECEIVER = """
import socket, sys
server = socket.create_server((sys.argv[1], 5555))
print("ready", flush=True)
conn, _ = server.accept()
while conn.recv(1 << 20):
    pass
conn.sendall(b"x")
"""


@needs_root
def test_the_link_carries_what_its_rate_says():
    """25 MB over a 200 Mbit/s link take 1 s, less the headers' share of the wire (TCP/IP over
    Ethernet at MTU 1500 leaves 1448 of each 1514 bytes to the payload: 0.96 s)."""
    size = 25_000_000
    with netem.emulated_network(2, netem.Link(200e6)) as (a, b):
        receiver = subprocess.Popen(
            b.command([sys.executable, "-c", RECEIVER, b.address]), stdout=subprocess.PIPE, text=True
        )
        assert receiver.stdout.readline().strip() == "ready"
        seconds = float(
            subprocess.check_output(a.command([sys.executable, "-c", SENDER, b.address, str(size)]))
        )
        receiver.wait(timeout=30)
    assert 0.9 < seconds / (size * 8 / 200e6 * 1514 / 1448) < 1.15


@needs_root
def test_a_failure_while_building_removes_what_was_built(monkeypatch):
    def fails(*args, **kwargs):
        raise DdlprofError("tc failed")

    monkeypatch.setattr(netem, "_shape", fails)
    with pytest.raises(DdlprofError, match="tc failed"), netem.emulated_network(3, netem.Link(1e9)):
        pass
    assert _ours(os.getpid()) == []


@needs_root
def test_what_a_killed_ddlprof_left_is_removed_by_the_next():
    """A ddlprof killed with SIGKILL cannot clean up: the next one removes the namespaces named after
    a process that is gone, and leaves those of live processes alone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan, alive = f"{netem.PREFIX}-{gone.pid}-n0", f"{netem.PREFIX}-{os.getppid()}-n0"
    for name in (orphan, alive):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        with netem.emulated_network(2, netem.Link(1e9)):
            assert orphan not in netem.namespaces() and alive in netem.namespaces()
    finally:
        netem.teardown([orphan, alive])


@needs_root
def test_a_delay_is_netem_under_tbf_or_one_clear_error():
    """Kernels without netem (CONFIG_NET_SCH_NETEM unset, as on the development machine) get a line
    saying so; the others a netem qdisc with the delay, the tbf under it."""
    try:
        with netem.emulated_network(2, netem.Link(1e9, 1e-3)) as built:
            shown = [_qdiscs(node) for node in built]
    except DdlprofError as exc:
        assert str(exc) == netem.NO_NETEM
    else:
        assert all("netem" in text and "delay 1ms" in text and "tbf" in text for text in shown)
    assert _ours(os.getpid()) == []


def _stalls_argv(out, rate: str, *job: str, steps: int = 4) -> list[str]:
    return [
        "stalls", "--steps", str(steps), "--warmup", "2", "--repeats", "1", "--timeout", "150", "--json",
        "--out", str(out), "--emulate-nodes", "2", "--emulate-link", rate,
        "--", "torchrun", "--nproc_per_node=2", *job,
    ]  # fmt: skip


@needs_root
def test_without_net_admin_it_is_one_line(tmp_path):
    drop = functools.partial(drop_capabilities, 12, 21)  # CAP_NET_ADMIN, CAP_SYS_ADMIN
    done = ddlprof(*_stalls_argv(tmp_path / "o", "1gbit", str(EXAMPLE)), preexec_fn=drop)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)" in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_link_needs_emulated_nodes(tmp_path):
    done = ddlprof("stalls", "--emulate-link", "1gbit", "--", "torchrun", "--nproc_per_node=2", "t.py")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--emulate-nodes" in done.stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@needs_root
@pytest.mark.e2e
def test_an_interrupted_run_leaves_nothing_behind(tmp_path):
    """Ctrl-C while the emulated nodes train over a slow link: ddlprof stops their ranks, removes
    the namespaces, and exits as interrupted."""
    out = tmp_path / "stalls"
    # the job's own --steps too (its default is 30, about 10 s over the slow link): 300 steps of about
    # 0.3 s outlast the moment the test interrupts
    job = (str(EXAMPLE), "--model", "mlp_w512", "--steps", "1000")
    argv = _stalls_argv(out, "200mbit", *job, steps=300)
    # Ctrl-C as a terminal sends it: a test run started in the background (`cmd &` in a script) has
    # SIGINT ignored, which its children inherit and Python then keeps (no KeyboardInterrupt at all)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddlprof", *argv], env=env(), stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline, pids = time.monotonic() + 120, []
    while time.monotonic() < deadline and proc.poll() is None:
        steps = list((out / "full" / "r0" / "ranks").glob("*.jsonl"))
        if len(steps) == 2 and all('"type":"step"' in path.read_text() for path in steps):
            for name in _ours(proc.pid):
                pids += subprocess.check_output(["ip", "netns", "pids", name], text=True).split()
            break
        time.sleep(0.5)
    assert pids, "the emulated nodes never trained"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert _ours(proc.pid) == []
    assert not [pid for pid in pids if _alive(int(pid))]
    assert f"dp{proc.pid}n" not in _host_interfaces()


def test_sigterm_unwinds_as_ctrl_c_does():
    """SIGTERM to ``ddlprof stalls`` takes the path the test above checks for Ctrl-C (the ranks are
    stopped and the network removed as the exception unwinds), and exits with SIGTERM's code."""
    from ddlprof.profiler.differential import terminate_as_interrupt

    with pytest.raises(SystemExit) as exited, terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert exited.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@needs_root
@pytest.mark.e2e
def test_a_failing_variant_leaves_nothing_behind(tmp_path):
    """Node 1 of the full variant dies at once while node 0 waits for it in the rendezvous, inside its
    namespace (the other variants fail at once, to keep the test short)."""
    script = tmp_path / "node_one_dies.py"
    script.write_text(
        "import os, runpy, sys\n"
        "if os.environ.get('GROUP_RANK') != '0' or not os.environ.get('NCCL_HOSTID'):\n"
        "    sys.exit('only node 0 of the emulated nodes runs')\n"
        f"sys.argv = [{str(EXAMPLE)!r}]\nrunpy.run_path({str(EXAMPLE)!r}, run_name='__main__')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddlprof", *_stalls_argv(tmp_path / "o", "1gbit", str(script))],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    result = json.loads(stdout)
    assert "exit codes" in result["variants"]["full"]["error"] and result["network_stall"] is None
    assert _ours(proc.pid) == []


@needs_root
@pytest.mark.e2e
def test_the_network_stall_grows_as_the_link_slows_as_the_cost_model_says(tmp_path):
    """2 emulated nodes x 1 rank (gloo), an MLP of 16.8 MB of gradients, at 400 Mbit/s and 2 Gbit/s.
    The cost model says the step's all-reduce moves 2(n-1)/n x its gradient bytes over each node's
    link, so the stall grows by that over 400 Mbit/s less that over 2 Gbit/s (269 ms). Tolerance
    0.8x to 1.4x: the model counts payload only, while tbf counts whole frames (about 5% more on
    the wire), gloo adds its own messages, a little of the all-reduce overlaps backward, and one run
    of 4 steps on a 2-core machine is noisy (measured: 1.07x)."""
    stalls, grad_bytes = {}, set()
    for rate in (400e6, 2e9):
        out = tmp_path / f"r{rate:g}"
        done = ddlprof(*_stalls_argv(out, f"{rate / 1e6:g}mbit", str(EXAMPLE), "--model", "mlp_w1024"))
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["emulate_link"] == {"rate_gbps": rate / 1e9, "delay_ms": 0.0}
        stalls[rate] = result["network_stall"]["ms"]
        grad_bytes.add(summary(out / "full" / "r0")["workload"]["grad_bytes"])
    (size,) = grad_bytes
    predicted_ms = ring_factor(2) * size * 8 * (1 / 400e6 - 1 / 2e9) * 1e3
    growth = stalls[400e6] - stalls[2e9]
    assert 0.8 * predicted_ms <= growth <= 1.4 * predicted_ms, (stalls, predicted_ms)
