"""Issue 14: while netkitd runs, ONE process (the DNS host) serves every network's DNS; without
netkitd each network has its own server, as before. Real containers, real queries (glibc's
getaddrinfo inside them), real processes found by the sockets they hold. One sandbox for the
whole story, to keep the suite lean."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest
from required import need
from waiting import first_line, wait_for

from netkit.dns import hostctl, supervisor

pytestmark = pytest.mark.root

RUN = "/run/netkit"
FAKEDNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakedns.py")
IN_PROCESS = {"NETKIT_DAEMON": "0"}

# Inside a container: resolve NAME (expecting ADDR) until STOPFILE exists, then print the number
# of answers and of failures (a wrong address or an error). glibc retries a lost query by itself
# (resolv.conf's timeout), so a failure means a name went unanswered, not a slow answer.
LOOP = r"""
import os, socket, sys
name, want, stop = sys.argv[1:4]
ok = bad = 0
while not os.path.exists(stop):
    try:
        got = socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]
    except socket.gaierror:
        got = None
    if got == want:
        ok += 1
    else:
        bad += 1
print(ok, bad, flush=True)
"""


def resolve(sandbox, container: str, name: str, env=None) -> str | None:
    code = ("import socket,sys\ntry:\n print(socket.getaddrinfo(sys.argv[1], None, socket.AF_INET)[0][4][0])\n"
            "except socket.gaierror:\n print('NONE')")
    out = netkit_in_process("exec", container, "--", "python3", "-c", code, name).stdout.strip() if env \
        else sandbox.netkit("exec", container, "--", "python3", "-c", code, name).stdout.strip()
    return None if out == "NONE" else out


def netkit_in_process(*args, check=True):
    """A command that does not go to netkitd (as when the client runs in-process)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "netkit", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **IN_PROCESS})
    assert proc.returncode == 0 or not check, proc.stdout + proc.stderr
    return proc


def port53_owners(ip: str) -> set[int]:
    """PIDs holding a UDP socket bound to IP:53 in this netns (from /proc/net/udp and the fds)."""
    want = "".join(f"{int(b):02X}" for b in reversed(ip.split("."))) + ":0035"
    with open("/proc/net/udp") as fh:
        inodes = {line.split()[9] for line in fh.readlines()[1:] if line.split()[1] == want}
    owners = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                owners.add(int(pid))
    return owners


def dns_processes() -> set[int]:
    """Every netkit DNS process (per-network servers and hosts) of this sandbox."""
    return {pid for _, pid in supervisor.servers()} | set(supervisor.hosts())


def host_pid() -> int | None:
    return hostctl.running_pid(RUN)


def daemon_status(sandbox) -> dict:
    return json.loads(sandbox.netkit("daemon", "status", "--json", check=False).stdout)


def start_loops(sandbox, tmp_path) -> tuple[list, str]:
    stop = str(tmp_path / "stop")
    loops = [sandbox.spawn(["ip", "netns", "exec", ct, "python3", "-c", LOOP, name, addr, stop])
             for ct, name, addr in (("a1", "a2", "172.30.1.3"), ("b1", "b2", "172.30.2.3"))]
    return loops, stop


def stop_loops(loops, stop) -> list[tuple[int, int]]:
    open(stop, "w").close()
    counts = []
    for proc in loops:
        out, err = proc.communicate(timeout=60)
        ok, bad = map(int, out.split())
        counts.append((ok, bad))
    os.unlink(stop)
    return counts


def test_one_dns_process_under_netkitd_and_hand_over_both_ways(sandbox, tmp_path):
    need("getent")
    # The sandbox host's resolver (its resolv.conf names 198.18.0.2, on the outside host).
    upstream = sandbox.spawn([sys.executable, FAKEDNS, "198.18.0.2=192.0.2.1"], netns="outside")
    assert first_line(upstream.stdout, what="the fake upstream resolver").strip() == "ready"
    for net, third in (("na", 1), ("nb", 2)):
        sandbox.netkit("network", "create", net, "--subnet", f"172.30.{third}.0/24")
        for i in (1, 2):
            sandbox.netkit("container", "create", f"{net[1]}{i}", "--net", net)
    own = {net: supervisor.serving_pid(net, RUN) for net in ("na", "nb")}
    assert len(set(own.values())) == 2 and host_pid() is None  # no daemon: a process per network

    # netkitd starts: the host takes both networks over while containers keep asking.
    loops, stop = start_loops(sandbox, tmp_path)
    wait_for(lambda: os.path.exists(RUN), what="the run dir")
    assert "netkitd started" in sandbox.netkit("daemon", "start").stdout
    host = host_pid()
    assert host is not None and daemon_status(sandbox)["dns_host"]["pid"] == host
    wait_for(lambda: not supervisor.servers(), what="the per-network servers to go")
    assert dns_processes() == {host}
    assert port53_owners("172.30.1.1") == port53_owners("172.30.2.1") == {host}  # one process, by pid
    for ok, bad in stop_loops(loops, stop):
        assert ok > 0 and bad == 0, "a name went unanswered during the take-over"

    # Each network resolves its own names, not the other's, from containers.
    assert resolve(sandbox, "a1", "a2") == "172.30.1.3" and resolve(sandbox, "b1", "b2") == "172.30.2.3"
    assert resolve(sandbox, "a1", "b2") is None and resolve(sandbox, "b2", "a1") is None
    # Other names are forwarded to the host's resolver (the per-network servers' forwarding code).
    assert resolve(sandbox, "b1", "ext.example") == "192.0.2.1"

    # Records follow create/rm (forwarded to netkitd); a network made in-process is the host's too.
    sandbox.netkit("container", "create", "a3", "--net", "na")
    assert resolve(sandbox, "a1", "a3") == "172.30.1.4"
    sandbox.netkit("container", "rm", "a3")
    assert resolve(sandbox, "a1", "a3") is None
    netkit_in_process("network", "create", "nc", "--subnet", "172.30.3.0/24")
    netkit_in_process("container", "create", "c1", "--net", "nc")
    assert resolve(sandbox, "c1", "c1") == "172.30.3.2" and resolve(sandbox, "c1", "a1") is None
    assert dns_processes() == {host} and port53_owners("172.30.3.1") == {host}
    assert sorted(hostctl.table(RUN)) == ["na", "nb", "nc"]
    # A network removed is served no more.
    sandbox.netkit("container", "rm", "c1")
    sandbox.netkit("network", "rm", "nc")
    assert sorted(hostctl.table(RUN)) == ["na", "nb"] and port53_owners("172.30.3.1") == set()
    assert host_pid() == host

    # The host dies while netkitd cannot react (stopped): doctor says so, --fix starts it again.
    daemon = daemon_status(sandbox)["pid"]
    os.kill(daemon, signal.SIGSTOP)
    try:
        os.kill(host, signal.SIGKILL)
        wait_for(lambda: host_pid() is None, what="the killed host to be gone")
        # In-process: a stopped netkitd forks no spare for the next forwarded command.
        report = netkit_in_process("doctor", check=False)
        assert report.returncode != 0 and "problem: the DNS host is not running" in report.stdout, report.stdout
        assert "DNS server of network 'na' is not running" in report.stdout
        assert resolve(sandbox, "a1", "a2", IN_PROCESS) is None
        fixed = netkit_in_process("doctor", "--fix", check=False)
        assert "fix: started the DNS host again" in fixed.stdout, fixed.stdout
        new_host = host_pid()
        assert new_host not in (None, host)
        assert resolve(sandbox, "a1", "a2", IN_PROCESS) == "172.30.1.3"
        assert resolve(sandbox, "b1", "b2", IN_PROCESS) == "172.30.2.3"
    finally:
        os.kill(daemon, signal.SIGCONT)
    # netkitd watches the host doctor started; when that one dies, netkitd starts the next.
    wait_for(lambda: daemon_status(sandbox)["dns_host"]["pid"] == new_host, what="netkitd to watch the new host")
    os.kill(new_host, signal.SIGKILL)
    third = wait_for(lambda: (p := host_pid()) not in (None, new_host) and p, what="netkitd to restart the host")
    assert resolve(sandbox, "a1", "a2") == "172.30.1.3"
    assert dns_processes() == {third} and sandbox.netkit("doctor", check=False).stdout.count("problem: the DNS") == 0

    # netkitd stops: every network gets its own server back, and names keep resolving meanwhile.
    loops, stop = start_loops(sandbox, tmp_path)
    assert "netkitd stopped" in sandbox.netkit("daemon", "stop").stdout
    servers = dict(supervisor.servers())
    assert sorted(servers) == ["na", "nb"] and set(supervisor.hosts()) == set()
    assert port53_owners("172.30.1.1") == {servers["na"]} and port53_owners("172.30.2.1") == {servers["nb"]}
    assert not hostctl.wanted(RUN) and host_pid() is None
    for ok, bad in stop_loops(loops, stop):
        assert ok > 0 and bad == 0, "a name went unanswered during the give-back"
    assert resolve(sandbox, "b1", "b2") == "172.30.2.3" and resolve(sandbox, "a1", "b1") is None

    # netkitd killed outright: its host keeps serving, unsupervised; doctor says so and --fix
    # gives each network its own server again.
    sandbox.netkit("daemon", "start")
    host = wait_for(lambda: host_pid(), what="the DNS host")
    wait_for(lambda: not supervisor.servers(), what="the per-network servers to go")
    os.kill(daemon_status(sandbox)["pid"], signal.SIGKILL)
    wait_for(lambda: not hostctl.daemon_alive(RUN), what="netkitd to be gone")
    report = sandbox.netkit("doctor", check=False).stdout
    assert f"problem: the DNS host (pid {host}) runs without netkitd" in report, report
    assert "network na's DNS is served by its own server again" in sandbox.netkit("doctor", "--fix").stdout
    assert sorted(dict(supervisor.servers())) == ["na", "nb"] and host_pid() is None and not supervisor.hosts()
    assert resolve(sandbox, "a1", "a2") == "172.30.1.3"
