"""Helpers for integration tests: echo servers in containers, snapshots of network state."""
from __future__ import annotations

import json
import os
import sys

from fwbackend import every_rule

ECHO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo.py")


def start_echo(sandbox, container: str | None, proto: str, ip: str, port: int, netns: str | None = None):
    """Start an echo server (in a container via netkit exec, or in a plain netns); wait until ready."""
    argv = [sys.executable, ECHO, "serve", proto, ip, str(port)]
    if container:
        argv = [sys.executable, "-m", "netkit", "exec", container, "--"] + argv
        proc = sandbox.spawn(argv)
    else:
        proc = sandbox.spawn(argv, netns=netns)
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"echo server did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
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
    """What 'nothing changed' compares: links, addresses, routes, netns names, UTS pins, /etc/netns,
    DNS servers, the firewall rules of every backend (without counters), ip_forward and netkit's state."""
    return {
        "links": sandbox.sh("ip -o link show | sed -E 's/^[0-9]+: //; s/ qlen.*//' | cut -d' ' -f1-3 | sort").stdout,
        "addrs": sandbox.sh("ip -o -4 addr show | awk '{print $2, $4}' | sort").stdout,
        "routes": sandbox.sh("ip -4 route show table all | sort").stdout,
        "netns": sorted(os.listdir("/run/netns")),
        "pins": sorted(os.listdir("/run/netkit/uts")) if os.path.isdir("/run/netkit/uts") else [],
        "etc": sorted(os.listdir("/etc/netns")),
        "dns": sorted(f for f in os.listdir("/run/netkit/dns") if f.endswith(".pid"))
        if os.path.isdir("/run/netkit/dns") else [],
        "iptables": every_rule(sandbox),
        "sysctls": sandbox.sh("sysctl -n net.ipv4.ip_forward").stdout,
        "containers": json.loads(sandbox.netkit("container", "ls", "--json").stdout),
        "networks": json.loads(sandbox.netkit("network", "ls", "--json").stdout),
    }
