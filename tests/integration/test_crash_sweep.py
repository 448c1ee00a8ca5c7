"""Issue 16, crash safety: each command is killed (SIGKILL) or failed (an exception) at its k-th
side-effecting step (NETKIT_FAULT_AT, netkit/faults.py: every kernel plan step, the state
commit, each after-commit step, the DNS pidfile write), for every k until the command completes.

After each kill: `doctor --fix`, then `doctor` must exit 0 (no disagreement), the world must be
exactly as before the command or exactly as after it (no leak: links, addresses, routes, netns,
UTS pins, /etc/netns, DNS pidfiles, iptables, ip_forward, state; no DNS server without a pidfile),
and the same command must then succeed. After each injected exception: kernel and state are
unchanged, with no repair at all.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nettools import snapshot

pytestmark = pytest.mark.root

NETKIT = [sys.executable, "-m", "netkit"]
MAX_STEPS = 40  # a guard: every command here completes in fewer


def run_with_fault(args, k: int, mode: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NETKIT_FAULT_AT=str(k), NETKIT_FAULT_MODE=mode)
    return subprocess.run(NETKIT + list(args), capture_output=True, text=True, env=env, timeout=60)


def world(sandbox):
    """snapshot() without what differs between two equal worlds: ids and creation times, the names
    of host-side veths (they derive from random container ids) and their kernel-chosen MACs; plus
    every DNS server process found by its argv (one without a pidfile is a leak too)."""
    snap = snapshot(sandbox)
    for config in snap["net"].values():
        for name, link in config["links"].items():
            if name.startswith("veth"):
                link.pop("mac", None)
    for key in ("containers", "networks"):
        snap[key] = [{k: v for k, v in item.items() if k not in ("id", "created")} for item in snap[key]]
    snap["dns_procs"] = sorted(_dns_servers())
    return _normal(snap)


def _normal(value):
    """Veth names masked; dicts as sorted (key, value) lists, so that masked keys cannot collide."""
    if isinstance(value, dict):
        return sorted(([_mask_veth(str(k)), _normal(v)] for k, v in value.items()), key=json.dumps)
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, str):
        return _mask_veth(value)
    return value


def _mask_veth(text: str) -> str:
    import re

    return re.sub(r"veth[0-9a-f]{7}", "vethX", text)


def _dns_servers() -> list[str]:
    from netkit.dns import supervisor

    return [net for net, _ in supervisor.servers()]


# (name, set-up commands, the command under test, the commands that undo it)
SCENARIOS = [
    ("container create", [], ["container", "create", "c1", "--net", "app", "--ip", "172.20.0.50",
                              "--mac", "02:42:ac:14:00:32"], [["container", "rm", "c1"]]),
    ("publish", [], ["publish", "8080:80", "web"], [["unpublish", "8080:80", "web"]]),
    ("network create", [], ["network", "create", "n2", "--subnet", "172.21.0.0/24"], [["network", "rm", "n2"]]),
    ("network rm", [["network", "create", "n3", "--subnet", "172.22.0.0/24"]], ["network", "rm", "n3"],
     [["network", "create", "n3", "--subnet", "172.22.0.0/24"]]),
    ("container rm", [["container", "create", "c2", "--net", "app", "--ip", "172.20.0.60", "--mac",
                       "02:42:ac:14:00:3c"]], ["container", "rm", "c2"],
     [["container", "create", "c2", "--net", "app", "--ip", "172.20.0.60", "--mac", "02:42:ac:14:00:3c"]]),
    # (c4 keeps n4's DNS server running: a disconnect leaves a network's server up, by design)
    ("connect", [["network", "create", "n4", "--subnet", "172.23.0.0/24"], ["container", "create", "c4", "--net", "n4"]],
     ["network", "connect", "n4", "web", "--ip", "172.23.0.9"], [["network", "disconnect", "n4", "web"]]),
]


@pytest.fixture
def base(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "--ip", "172.20.0.10")
    return sandbox


def _doctor_ok(sandbox, where: str) -> None:
    fix = sandbox.netkit("doctor", "--fix", check=False)
    assert "Traceback" not in fix.stderr, f"{where}: doctor --fix crashed:\n{fix.stderr}"
    r = sandbox.netkit("doctor", check=False)
    assert r.returncode == 0, f"{where}: doctor still finds problems after --fix:\n{r.stdout}{r.stderr}\n" \
                              f"(--fix said:\n{fix.stdout}{fix.stderr})"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_kill_at_every_step_is_repaired(base, scenario):
    name, setup, command, inverse = scenario
    for args in setup:
        base.netkit(*args)
    before = world(base)
    base.netkit(*command)
    after = world(base)
    for args in inverse:
        base.netkit(*args)
    assert world(base) == before, "the inverse commands do not restore the world"
    killed = 0
    for k in range(1, MAX_STEPS):
        r = run_with_fault(command, k, "kill")
        if r.returncode == 0:
            break  # k is past the last step: the command completed
        assert r.returncode == -9, f"{name} k={k}: {r.returncode} {r.stderr}"
        killed += 1
        _doctor_ok(base, f"{name} killed at step {k}")
        now = world(base)
        assert now in (before, after), f"{name} killed at step {k}: neither rolled back nor forward:\n" \
                                       f"{_diff(before, now)}\n--- vs after:\n{_diff(after, now)}"
        if now == before:
            base.netkit(*command)  # the same command works after the repair
        for args in inverse:
            base.netkit(*args)
        assert world(base) == before, f"{name} k={k}: leak after the command and its inverse:\n" \
                                      f"{_diff(before, world(base))}"
    else:
        pytest.fail(f"{name} never completed")
    for args in inverse:  # the completed run
        base.netkit(*args)
    assert killed >= 2, f"{name}: only {killed} kill points"
    print(f"{name}: killed at {killed} steps, all repaired")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_failure_at_every_step_changes_nothing(base, scenario):
    name, setup, command, inverse = scenario
    for args in setup:
        base.netkit(*args)
    before = world(base)
    for k in range(1, MAX_STEPS):
        r = run_with_fault(command, k, "raise")
        if r.returncode == 0:
            for args in inverse:
                base.netkit(*args)
            break
        # A failure before the commit: nothing changed. After it (derived steps, deletions that
        # follow the commit): the change stands and one line says to run doctor --fix.
        lines = r.stderr.strip().splitlines()
        assert "Traceback" not in r.stderr and len(lines) == 1, f"{name} k={k}: {r.stderr}"
        if "doctor --fix" in lines[0] and "the change itself is saved" in lines[0]:
            _doctor_ok(base, f"{name} failed after commit at {k}")
            for args in inverse:
                base.netkit(*args)
        assert world(base) == before, f"{name} failed at step {k}: {lines[0]}\n{_diff(before, world(base))}"
    else:
        pytest.fail(f"{name} never completed")


def _diff(a: dict, b: dict) -> str:
    a, b = dict(a), dict(b)
    return "\n".join(f"{k}: {a[k]!r}\n  != {b.get(k)!r}" for k in a if a[k] != b.get(k))
