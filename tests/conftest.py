"""Test harness: every root test runs in a fresh sandbox of its own.

The whole pytest run is started inside `netkit sandbox` (scripts/test does it), so it already
sits in private network, mount and PID namespaces. For each test marked `root` the fixture steps
the pytest process into a brand-new netns with fresh /run/netns, /run/netkit, /etc/netns and
state folder, builds the `outside` host, and afterwards kills every process the test left
(they can only be ours: the PID namespace is the sandbox's) and drops the whole netns.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, settings

from netkit import sandbox as sb
from waiting import wait_for

# Property tests judge results, never speed: a loaded CI machine must not turn a slow example
# (hypothesis's 200 ms default deadline) or slow data generation into a failure.
settings.register_profile("netkit", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("netkit")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETKIT = [sys.executable, "-m", "netkit"]


def pytest_collection_modifyitems(config, items):
    if sb.in_sandbox():
        return
    skip = pytest.mark.skip(reason="needs the sandbox: run the suite with scripts/test")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


class Sandbox:
    """Handle on the per-test world: run netkit and commands inside it."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self.uplink = sb.UPLINK_ADDR
        self.outside = sb.OUTSIDE_ADDR
        self.procs: list[subprocess.Popen] = []

    def netkit(self, *args, check=True, input=None, timeout=60) -> subprocess.CompletedProcess:
        proc = subprocess.run(NETKIT + [str(a) for a in args], capture_output=True, text=True,
                              input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"netkit {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    def sh(self, cmd: str, check=True, timeout=30) -> subprocess.CompletedProcess:
        proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def ns(self, netns: str, cmd: str, check=True, timeout=30) -> subprocess.CompletedProcess:
        return self.sh(f"ip netns exec {netns} {cmd}", check=check, timeout=timeout)

    def spawn(self, argv: list[str], netns: str | None = None) -> subprocess.Popen:
        """Start a background process (in `netns` if given); killed at the end of the test."""
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def inspect(self, kind: str, name: str) -> dict:
        import json

        return json.loads(self.netkit(kind, "inspect", "--netkit", name).stdout)  # netkit's own view


def _kill_strays(keep: set[int]) -> None:
    """Every process of this PID namespace but init and pytest's own chain: all started by tests.
    Kill until none is left (orphans are reaped by the sandbox's init, so they vanish a moment
    after SIGKILL), within a bound."""
    def survivors() -> list[int]:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in keep]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, os.WNOHANG)  # reap our own children; init reaps the orphans
            except ChildProcessError:
                pass
        return [pid for pid in pids if os.path.exists(f"/proc/{pid}")]

    wait_for(lambda: not survivors(), 20, "every process the test started to exit")


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 0:
        pids.add(pid)
        with open(f"/proc/{pid}/stat") as fh:
            pid = int(fh.read().rsplit(")", 1)[1].split()[1])
    return pids


@pytest.fixture
def sandbox():
    if not sb.in_sandbox():
        pytest.skip("needs the sandbox: run the suite with scripts/test")
    from netkit.kernel import nsutil

    home = nsutil.current_netns_fd()
    saved_env = dict(os.environ)
    state = tempfile.mkdtemp(prefix="netkit-test-")
    nsutil.unshare(nsutil.CLONE_NEWNET)
    try:
        sb.mount_private_dirs()
        sb.build_network()
        os.environ["NETKIT_STATE_DIR"] = state
        os.environ["NETKIT_CONFIG"] = os.path.join(state, "config.json")
        box = Sandbox(state)
        yield box
    finally:
        for proc in box.procs if "box" in locals() else []:
            if proc.poll() is None:
                proc.kill()
        _kill_strays(_ancestors() | {1})
        sb.unmount_private_dirs()
        nsutil.setns(home, nsutil.CLONE_NEWNET)
        os.close(home)
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(state, ignore_errors=True)
