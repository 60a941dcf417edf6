"""Emulated links between emulated nodes: ``ddlprof stalls --emulate-nodes K --emulate-link RATE[,DELAY]``.

Each emulated node gets its own network namespace; two nodes are joined by one veth pair, more by a
bridge in a namespace of its own (one veth pair per node). Every node's interface is shaped on the
way out with ``tc``: ``tbf`` at RATE (the node's uplink) under ``netem`` DELAY (one way, so the round
trip is twice DELAY); with a bridge the bridge's port to each node is shaped at RATE too (its
downlink). Ranks of one node still talk over their namespace's loopback, unshaped.

Built with ``ip`` and ``tc`` (iproute2) through subprocess: pyroute2 is not installed here, and the
two commands are on every Linux host that can do this at all. It needs CAP_NET_ADMIN and
CAP_SYS_ADMIN (``ip netns add`` mounts the namespace under /run/netns). Addresses come from
198.18.0.0/15 (RFC 2544: benchmarking networks), used only inside the namespaces made here; names
carry the pid, so that parallel invocations never collide. Everything is removed on exit, also on
an error half way through building it; what a ddlprof killed outright (SIGKILL) left behind is
removed by the next one, which finds namespaces named after a process that no longer exists.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from ddlprof.errors import DdlprofError

SUBNET = "198.18.0"  # /24 inside 198.18.0.0/15 (RFC 2544); .1 is node 0
PREFIX = "ddlprof"
_CAP_NET_ADMIN, _CAP_SYS_ADMIN = 12, 21
_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
_DELAY_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_LINK = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z]+)\s*(?:,\s*([0-9]*\.?[0-9]+)\s*([a-z]+)\s*)?$")


@dataclass(frozen=True)
class Link:
    """A link of one rate (bits per second) and one-way delay (seconds)."""

    rate_bps: float
    delay_s: float = 0.0


def parse_link(text: str) -> Link:
    """``2gbit`` or ``500mbit,1ms`` (tc's units; never tc's ``bps``, which means bytes per second)."""
    match = _LINK.match(text.lower())
    allowed = "the allowed range: a rate from 8kbit to 1tbit, a delay of at most 10 s"
    wrong = (
        f"--emulate-link {text!r}: expected RATE[,DELAY] such as 2gbit or 500mbit,1ms "
        f"(rate in {', '.join(_RATE_UNITS)}; delay in {', '.join(_DELAY_UNITS)}); {allowed}"
    )
    if not match or match[2] not in _RATE_UNITS or (match[4] and match[4] not in _DELAY_UNITS):
        raise DdlprofError(wrong)
    rate = float(match[1]) * _RATE_UNITS[match[2]]
    delay = float(match[3]) * _DELAY_UNITS[match[4]] if match[3] else 0.0
    if not 8e3 <= rate <= 1e12 or delay > 10:
        raise DdlprofError(f"--emulate-link {text!r} is outside {allowed}")
    return Link(rate, delay)


@dataclass(frozen=True)
class Node:
    """Where one emulated node's ranks run: its namespace, its interface and that interface's address."""

    netns: str
    interface: str
    address: str

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the node's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


def _effective_capabilities() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_allowed() -> None:
    """One line saying what is missing when this process cannot build namespaces and shape links."""
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        raise DdlprofError(f"--emulate-link needs iproute2's {' and '.join(missing)}, not found on PATH")
    caps = _effective_capabilities()
    if not (caps >> _CAP_NET_ADMIN & 1 and caps >> _CAP_SYS_ADMIN & 1):
        raise DdlprofError(
            "--emulate-link needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to build network namespaces "
            "and shape them with tc; run as root, or leave --emulate-link out"
        )


NO_NETEM = (
    "--emulate-link: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM), which the DELAY needs; "
    "give the RATE alone"
)


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        detail = (done.stderr or done.stdout).strip().splitlines()
        if "netem" in argv and "qdisc kind is unknown" in done.stderr:
            raise DdlprofError(NO_NETEM)
        raise DdlprofError(
            f"--emulate-link: `{' '.join(argv)}` failed: {detail[-1] if detail else done.returncode}"
        )


def _shape(netns: str, interface: str, link: Link, delay: bool) -> None:
    """tbf at the link's rate, under netem's delay (netem at the root, tbf its child, as the netem
    documentation chains them). The bucket holds 1 ms at the rate (at least 64 KiB, so that a
    segmentation-offloaded 64 KiB packet passes whole); packets queue up to 100 ms."""
    rate = f"{link.rate_bps:.0f}bit"
    burst = max(65536, int(link.rate_bps / 8 / 1000))
    tbf = ["tbf", "rate", rate, "burst", str(burst), "latency", "100ms"]
    if delay and link.delay_s:
        _run("tc", "-n", netns, "qdisc", "add", "dev", interface, "root", "handle", "1:", "netem",
             "delay", f"{link.delay_s * 1e6:.0f}us", "limit", "100000")  # fmt: skip
        _run("tc", "-n", netns, "qdisc", "add", "dev", interface, "parent", "1:1", "handle", "10:", *tbf)
    else:
        _run("tc", "-n", netns, "qdisc", "add", "dev", interface, "root", "handle", "1:", *tbf)


def _up(netns: str, interface: str) -> None:
    _run("ip", "-n", netns, "link", "set", interface, "up")


def namespaces() -> list[str]:
    """The names of the network namespaces on this host (``ip netns list``)."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _stop_processes(netns: str) -> None:
    """End what still runs in the namespace (ranks of a variant that was interrupted): they were
    started here, and a namespace with a process in it outlives ``ip netns del`` with its veth."""
    done = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    pids = [int(p) for p in done.stdout.split() if p.isdigit()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in pids):
            time.sleep(0.05)


def remove_orphans() -> list[str]:
    """Remove the namespaces of ddlprof processes that are gone; their names."""
    owned = re.compile(rf"^{PREFIX}-(\d+)-")
    orphans = [
        name
        for name in namespaces()
        if (match := owned.match(name)) and not os.path.exists(f"/proc/{match[1]}")
    ]
    teardown(orphans)
    return orphans


def teardown(names: list[str]) -> None:
    """Remove the namespaces (and with them their veths, bridge and qdiscs), whatever state they are in."""
    for name in names:
        if name in namespaces():
            _stop_processes(name)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@contextmanager
def emulated_network(nodes: int, link: Link) -> Iterator[list[Node]]:
    """Build ``nodes`` namespaces joined by shaped links; yield where each node's ranks run; remove it all."""
    check_allowed()
    remove_orphans()
    tag = f"{PREFIX}-{os.getpid()}"
    names = [f"{tag}-n{k}" for k in range(nodes)]
    hub = f"{tag}-hub"
    built = [*names, *([hub] if nodes > 2 else [])]
    result = [Node(name, f"dp{os.getpid()}n{k}", f"{SUBNET}.{k + 1}") for k, name in enumerate(names)]
    try:
        for name in built:
            _run("ip", "netns", "add", name)
            _run("ip", "-n", name, "link", "set", "lo", "up")
        if nodes == 2:
            a, b = result
            _run("ip", "link", "add", a.interface, "netns", a.netns, "type", "veth",
                 "peer", "name", b.interface, "netns", b.netns)  # fmt: skip
        else:
            _run("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
            _up(hub, "br0")
            for k, node in enumerate(result):
                port = f"port{k}"
                _run("ip", "link", "add", node.interface, "netns", node.netns, "type", "veth",
                     "peer", "name", port, "netns", hub)  # fmt: skip
                _run("ip", "-n", hub, "link", "set", port, "master", "br0")
                _shape(hub, port, link, delay=False)
                _up(hub, port)
        for node in result:
            _run("ip", "-n", node.netns, "addr", "add", f"{node.address}/24", "dev", node.interface)
            _shape(node.netns, node.interface, link, delay=True)
            _up(node.netns, node.interface)
        yield result
    finally:
        teardown(built)
