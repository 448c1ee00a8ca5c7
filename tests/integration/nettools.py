"""Helpers for integration tests: echo servers in containers, snapshots of network state."""
from __future__ import annotations

import json
import os
import sys

import netstate
from fwbackend import every_rule
from waiting import first_line, wait_for

ECHO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo.py")


def start_echo(sandbox, container: str | None, proto: str, ip: str, port: int, netns: str | None = None):
    """Start an echo server (in a container via netkit exec, or in a plain netns); wait until ready."""
    argv = [sys.executable, ECHO, "serve", proto, ip, str(port)]
    if container:
        argv = [sys.executable, "-m", "netkit", "exec", container, "--"] + argv
        proc = sandbox.spawn(argv)
    else:
        proc = sandbox.spawn(argv, netns=netns)
    line = first_line(proc.stdout, what=f"echo server {container or netns}:{port} to say ready")
    assert line.strip() == "ready", f"echo server did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
    return proc


def foreign_netns_process(sandbox):
    """A process in a netns of its own made by someone else (`unshare -n`), as a container
    runtime would leave it; returned once it is really in that netns (unshare has run)."""
    proc = sandbox.spawn(["unshare", "-n", "sleep", "600"])
    ours = os.readlink("/proc/self/ns/net")

    def moved():
        try:
            return os.readlink(f"/proc/{proc.pid}/ns/net") != ours
        except FileNotFoundError:
            raise AssertionError(f"unshare -n exited early: {proc.stderr.read()}") from None

    wait_for(moved, what=f"PID {proc.pid} (unshare -n) to enter its own netns")
    return proc


def send_echo(sandbox, where: str | None, proto: str, ip: str, port: int, msg: str = "hi", check=True):
    """Send from a container (`where` = container name), 'ns:NAME' for a plain netns, or None for the host."""
    cmd = f"{sys.executable} {ECHO} send {proto} {ip} {port} {msg}"
    if where is None:
        return sandbox.sh(cmd, check=check)
    if where.startswith("ns:"):
        return sandbox.ns(where[3:], cmd, check=check)
    return sandbox.sh(f"{sys.executable} -m netkit exec {where} -- {cmd}", check=check)


def snapshot(sandbox) -> dict:
    """What 'nothing changed' compares: the network configuration of the host and every netns
    (netstate.py: never the state the kernel changes on its own), netns names, UTS pins,
    /etc/netns, DNS servers, the firewall rules of every backend as configuration, and netkit's state."""
    return {
        "net": netstate.network_config(),
        "netns": netstate.all_netns(),
        "pins": sorted(os.listdir("/run/netkit/uts")) if os.path.isdir("/run/netkit/uts") else [],
        "etc": sorted(os.listdir("/etc/netns")),
        "dns": sorted(f for f in os.listdir("/run/netkit/dns") if f.endswith(".pid"))
        if os.path.isdir("/run/netkit/dns") else [],
        "iptables": every_rule(sandbox),
        "containers": netkit_json("container", "ls", "--json"),
        "networks": netkit_json("network", "ls", "--json"),
    }


def netkit_json(*args: str):
    """The JSON a read-only `netkit ARGS` prints, run in this process (Typer's test runner, same
    environment, netns and state folder as a `netkit` child would have): snapshots are taken
    hundreds of times per suite run (crash and bad-input sweeps), and a netkit process costs
    ~0.2 s of start-up each time."""
    from typer.testing import CliRunner

    from netkit.cli import main
    from netkit.cli.app import app

    main.load()  # registers every command group on the app (`netkit` itself loads only the one named)

    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        raise AssertionError(f"netkit {' '.join(args)} failed ({result.exit_code}):\n{result.output}"
                             f"{result.exception!r}")
    return json.loads(result.stdout)


# /proc/net/tcp states (include/net/tcp_states.h) a connection passes through while packets are
# still to come: all but LISTEN (0A), TIME_WAIT (06) and CLOSE (07).
TCP_MOVING = {"01", "02", "03", "04", "05", "08", "09", "0B"}


def tcp_settled(*netns: str) -> bool:
    """No TCP connection in these netns is still opening or closing: every packet of every
    exchange has been through the kernel (and past each capture point on its way)."""
    from netkit.kernel import nsutil

    for ns in netns:
        with nsutil.entered_netns(f"/run/netns/{ns}"):
            # thread-self: the netns of this thread, which entered_netns moved (not the process's).
            with open("/proc/thread-self/net/tcp") as fh:
                states = [line.split()[3] for line in fh.read().splitlines()[1:]]
        if TCP_MOVING & set(states):
            return False
    return True


def ip_counter(name: str) -> int:
    """A counter of the `Ip:` line of /proc/net/snmp in this thread's netns (e.g. InAddrErrors)."""
    with open("/proc/thread-self/net/snmp") as fh:
        header, values = [line.split() for line in fh if line.startswith("Ip:")][:2]
    return int(values[header.index(name)])
