"""Issue 14: netkitd runs commands for the `netkit` client with the in-process outcome, or the
client runs them itself; real daemon, real sockets, real kernel objects."""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from required import need
from waiting import wait_for

pytestmark = pytest.mark.root

NETKIT = [sys.executable, "-m", "netkit"]
IN_PROCESS = {"NETKIT_DAEMON": "0"}


def status(sandbox) -> dict:
    return json.loads(sandbox.netkit("daemon", "status", "--json", check=False).stdout)


@pytest.fixture
def daemon(sandbox):
    out = sandbox.netkit("daemon", "start").stdout
    assert "netkitd started" in out
    yield sandbox
    sandbox.netkit("daemon", "stop", check=False)


def cli(args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(NETKIT + list(args), capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, **kw)


def served(sandbox) -> int:
    return status(sandbox)["served"]


def both_ways(sandbox, args):
    """(forwarded, in-process) results of the same command; the first must have been served."""
    before = served(sandbox)
    fwd = cli(args)
    assert served(sandbox) == before + 1, f"netkit {' '.join(args)} was not forwarded"
    local = cli(args, IN_PROCESS)
    assert served(sandbox) == before + 1, "NETKIT_DAEMON=0 must run in-process"
    return fwd, local


# Commands whose outcome does not change the world, so both ways must print the same bytes:
# reads, dry runs, and every kind of refusal (bad input, conflict, not found, usage errors).
SAME_OUTCOME = [
    ["network", "ls"],
    ["network", "ls", "--json"],
    ["container", "ls"],
    ["container", "inspect", "web"],
    ["container", "inspect", "web", "--text"],
    ["network", "inspect", "app"],
    ["port", "web"],
    ["rules"],
    ["config", "show"],
    ["--help"],
    [],
    ["container", "create", "--help"],
    ["container", "create", "api", "--net", "app", "-p", "127.0.0.1:9000:9000", "--dry-run"],
    ["network", "create", "other", "--subnet", "172.21.0.0/24", "--dry-run"],
    ["container", "inspect", "nope"],  # not found: exit 2
    ["container", "create", "web", "--net", "app"],  # conflict: exit 2
    ["network", "create", "bad", "--subnet", "1.2.3.4/99"],  # bad input: exit 2
    ["container", "create", "x", "--net", "app", "-p", "99999:80"],
    ["network", "rm", "app"],  # refused while containers are attached
    ["container", "create"],  # click usage error: exit 2
    ["network", "frobnicate"],
    ["container", "create", "x", "--bogus-option"],
]


def _same(text: str) -> str:
    """A new container's host veth name comes from its random id: the one thing allowed to differ."""
    return re.sub(r"veth[0-9a-f]{7}", "veth*", text)


def test_forwarded_commands_match_in_process_ones(daemon):
    daemon.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    daemon.netkit("container", "create", "web", "--net", "app", "-p", "8088:80")
    codes = set()
    for args in SAME_OUTCOME:
        fwd, local = both_ways(daemon, args)
        label = "netkit " + " ".join(args)
        assert (fwd.returncode, _same(fwd.stdout), fwd.stderr) == (local.returncode, _same(local.stdout), local.stderr), label
        codes.add(fwd.returncode)
    assert codes == {0, 2}


def test_forwarded_changes_are_real_and_concurrent_clients_are_serialised(daemon):
    before = served(daemon)
    assert cli(["network", "create", "app", "--subnet", "172.20.0.0/24"]).returncode == 0
    procs = [subprocess.Popen(NETKIT + ["container", "create", f"c{i}", "--net", "app"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(10)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(code == 0 and re.fullmatch(r"[0-9a-f]{64}\n", out) and not err for code, out, err in results), results
    assert served(daemon) == before + 11
    # Ten distinct addresses, each on a real eth0 in its netns.
    seen = set()
    for i in range(10):
        addr = json.loads(daemon.sh(f"ip -n c{i} -j addr show eth0").stdout)[0]["addr_info"]
        seen |= {a["local"] for a in addr if a["family"] == "inet"}
    assert len(seen) == 10
    # A forwarded container reaches another over the bridge.
    daemon.ns("c0", "ping -c1 -W2 172.20.0.3")


def test_stdin_is_the_clients_and_exit_codes_pass_through(daemon):
    # Output to a file the client opened, and an error exit code, both from the daemon.
    path = os.path.join(daemon.state_dir, "out.txt")
    with open(path, "w") as fh:
        code = subprocess.run(NETKIT + ["network", "ls", "--json"], stdout=fh, timeout=60).returncode
    assert code == 0 and json.load(open(path)) == []
    assert cli(["container", "rm", "ghost"]).returncode == 2


def test_daemon_down_runs_in_process(sandbox):
    sandbox.netkit("daemon", "start")
    pid = status(sandbox)["pid"]
    os.kill(pid, signal.SIGKILL)  # dies without cleaning up: its socket file stays
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z":
        time.sleep(0.01)
    assert os.path.exists("/run/netkit/netkit.sock")
    result = cli(["network", "create", "app", "--subnet", "172.20.0.0/24"])
    assert result.returncode == 0 and not result.stderr
    assert "br-app" in sandbox.sh("ip -br link").stdout
    # And a new daemon takes over the stale socket file.
    assert "netkitd started" in sandbox.netkit("daemon", "start").stdout
    assert served(sandbox) == 0 and cli(["network", "ls"]).returncode == 0 and served(sandbox) == 1


def test_client_in_another_netns_runs_in_process(daemon):
    daemon.sh("ip netns add elsewhere")
    before = served(daemon)
    inside = subprocess.run(["ip", "netns", "exec", "elsewhere"] + NETKIT + ["bridge", "create", "brx"],
                            capture_output=True, text=True, timeout=60)
    assert inside.returncode == 0, inside.stderr
    assert served(daemon) == before  # the daemon's netns is not the client's: refused, ran here
    assert "brx" in daemon.sh("ip -n elsewhere -br link").stdout
    assert "brx" not in daemon.sh("ip -br link").stdout


def _flock_waiters(path: str) -> list[int]:
    """PIDs blocked in flock() on `path`, from the kernel's own list: /proc/locks shows each
    waiter as `N: -> FLOCK ADVISORY WRITE PID MAJ:MIN:INODE ...` after the lock it waits for."""
    st = os.stat(path)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as fh:
        rows = [line.split() for line in fh]
    return [int(row[5]) for row in rows if len(row) > 6 and row[1:3] == ["->", "FLOCK"] and row[6] == where]


def _interrupted_create(sandbox, env: dict, forwarded: bool) -> tuple[int, str, str]:
    """Ctrl-C on `container create` while it waits for the state lock; its outcome."""
    lock_path = os.path.join(sandbox.state_dir, "lock")
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held: the create waits inside its transaction
    try:
        before = served(sandbox)
        proc = subprocess.Popen(NETKIT + ["container", "create", "web", "--net", "app"], env={**os.environ, **env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Interrupt only once the command is blocked on the lock (not at a guessed moment): in
        # the daemon's child when forwarded, in the client itself when not.
        waiters = wait_for(lambda: _flock_waiters(lock_path), timeout=60, what="container create to wait for the state lock")
        assert len(waiters) == 1 and (waiters[0] != proc.pid) == forwarded, (waiters, proc.pid)
        if forwarded:
            assert served(sandbox) == before + 1 and status(sandbox)["running"] == 1
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(lock)
    return proc.returncode, out, err


def test_ctrl_c_reaches_the_command_and_undoes_it(daemon):
    daemon.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    forwarded = _interrupted_create(daemon, {}, forwarded=True)
    assert status(daemon)["running"] == 0
    local = _interrupted_create(daemon, IN_PROCESS, forwarded=False)
    assert forwarded == local and forwarded[0] == 130
    assert daemon.netkit("container", "ls", "--json").stdout.strip() == "[]"
    assert "web" not in daemon.sh("ip netns list").stdout


def test_command_killed_in_the_daemon_reports_the_signal(daemon):
    # The child reports its own exit status; one killed before it can is reported by netkitd
    # when it reaps it: 128 + the signal, what a shell says of a killed `netkit`.
    daemon.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    before = served(daemon)
    killed = cli(["container", "create", "web", "--net", "app"], {"NETKIT_FAULT_AT": "1", "NETKIT_FAULT_MODE": "kill"})
    assert served(daemon) == before + 1 and killed.returncode == 128 + signal.SIGKILL, killed.stderr
    assert status(daemon)["running"] == 0
    # The next change (served by the next child) finishes or undoes the interrupted one first.
    assert cli(["container", "create", "db", "--net", "app"]).returncode == 0 and served(daemon) == before + 2
    assert "web" not in daemon.sh("ip netns list").stdout or "web" in daemon.netkit("container", "ls").stdout


def test_socket_is_root_only(daemon):
    need("setpriv")
    st = os.stat("/run/netkit/netkit.sock")
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    probe = ("import socket; s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect('/run/netkit/netkit.sock'); print('connected')\n"
             "except PermissionError:\n    print('refused')\n")
    as_nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert as_nobody.stdout.strip() == "refused", as_nobody.stderr
    # Root without CAP_NET_ADMIN must not get it through the daemon: it runs in-process.
    before = served(daemon)
    weak = subprocess.run(["setpriv", "--bounding-set=-net_admin", "--inh-caps=-all"] + NETKIT +
                          ["bridge", "create", "brweak"], capture_output=True, text=True, timeout=60)
    assert served(daemon) == before
    assert weak.returncode != 0 and "brweak" not in daemon.sh("ip -br link").stdout


def test_stale_daemon_restarts_itself_and_client_runs_in_process(daemon):
    old = status(daemon)
    marker = os.path.join(os.path.dirname(os.path.abspath(__import__("netkit").__file__)), "daemon", "__init__.py")
    st = os.stat(marker)
    os.utime(marker, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # "netkit was upgraded"
    try:
        result = cli(["network", "ls"])
        assert result.returncode == 0 and result.stdout.startswith("NETWORK ID")
        deadline = time.monotonic() + 20
        new = None
        while time.monotonic() < deadline:
            new = json.loads(cli(["daemon", "status", "--json"]).stdout)
            if new.get("up") and new["version"] != old["version"]:
                break
            time.sleep(0.1)
        assert new["pid"] == old["pid"] and new["version"] != old["version"] and new["served"] == 0
        assert cli(["network", "ls"]).returncode == 0 and served(daemon) == 1
    finally:
        os.utime(marker, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_status_start_stop(sandbox):
    assert sandbox.netkit("daemon", "status", check=False).returncode == 1
    assert "netkitd started" in sandbox.netkit("daemon", "start").stdout
    assert "already running" in sandbox.netkit("daemon", "start").stdout
    pid = status(sandbox)["pid"]
    assert int(open("/run/netkit/netkitd.pid").read()) == pid
    assert f"netkitd stopped (pid {pid})" in sandbox.netkit("daemon", "stop").stdout
    assert not os.path.exists("/run/netkit/netkit.sock") and not os.path.exists("/run/netkit/netkitd.pid")
    assert "not running" in sandbox.netkit("daemon", "stop").stdout
