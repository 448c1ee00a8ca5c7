"""Talk to the DNS host (netkit.dns.host), the one process that serves every network's DNS while
netkitd runs: where its files are, whether it runs, one request on its control socket, and
starting it. Imports only cheap stdlib modules (the engine calls this on every change).

Files in RUN_DIR/dns: host.sock (control, root only), host.pid, host.log, host.json (the networks
it serves, rewritten by the host on every change: a restarted host serves them all again at once,
and its presence says a host should be running) and host.lock (held shared while a command
decides who serves a network, exclusively while the host takes networks over or gives them back).

Requests (one JSON line each way, one request per connection):
    {"op": "serve", "network", "listen", "port", "records"}  -> {"ok": true, "pid": PID}
    {"op": "drop", "network"}                                -> {"ok": true, "dropped": BOOL}
    {"op": "list"}                              -> {"ok": true, "pid", "version", "networks": {...}}
    {"op": "quit", "forget": BOOL}                           -> {"ok": true}, then it exits
    any failure                                              -> {"error": "one line"}
"""

from __future__ import annotations

import json
import os
import socket
import sys
import zlib

from netkit import detached

MODULE = "netkit.dns.host"
CALL_TIMEOUT = 10.0  # a request is a bind or a dict lookup; a loaded machine can be slow


class HostError(Exception):
    """The host answered with an error (one line)."""


def code_version() -> str:
    """Which DNS code this is: names, sizes and mtimes of netkit/dns/*.py. A host started before
    netkit was upgraded (or edited) reports another one, and netkitd replaces it."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = []
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            st = os.stat(os.path.join(here, name))
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return f"{zlib.crc32(' '.join(parts).encode()):08x}"


def paths(run_dir: str) -> dict[str, str]:
    d = os.path.join(run_dir, "dns")
    return {k: os.path.join(d, f"host.{k}") for k in ("sock", "pid", "log", "json", "lock")}


def is_host(pid: int) -> bool:
    return detached.runs_module(detached.argv_of(pid), MODULE)


def running_pid(run_dir: str) -> int | None:
    """The PID of the live DNS host this run dir names, if any."""
    pid = detached.read_pid(paths(run_dir)["pid"])
    return pid if pid is not None and is_host(pid) else None


def wanted(run_dir: str) -> bool:
    """A host has served networks and was not told to give them back (so one should run)."""
    return os.path.exists(paths(run_dir)["json"])


def table(run_dir: str) -> dict[str, dict]:
    """The networks the host serves (or served, if it died), from its own file."""
    try:
        with open(paths(run_dir)["json"], encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def call(run_dir: str, request: dict, timeout: float = CALL_TIMEOUT) -> dict | None:
    """The host's reply, or None if no host listens (a host that fails mid-request: OSError)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(paths(run_dir)["sock"])
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the DNS host closed the connection without an answer")
            data += chunk
    finally:
        sock.close()
    reply = json.loads(data)
    if "error" in reply:
        raise HostError(reply["error"])
    return reply


def daemon_alive(run_dir: str) -> bool:
    """netkitd runs for this run dir (its pidfile names a live `netkit daemon run`)."""
    pid = detached.read_pid(os.path.join(run_dir, "netkitd.pid"))
    argv = detached.argv_of(pid) if pid else []
    return any("netkit" in a for a in argv) and "daemon" in argv and "run" in argv


def spawn(run_dir: str, adopt: bool, replace: bool = False) -> int:
    """Start a DNS host (caller holds host.lock exclusively and knows none answers, or, with
    replace, that the one answering is to be replaced); its PID once it serves every network of
    host.json (and, with adopt, those of running per-network servers)."""
    p = paths(run_dir)
    argv = [sys.executable, "-m", MODULE, "--run-dir", os.path.abspath(run_dir)]
    argv += (["--adopt"] if adopt else []) + (["--replace"] if replace else [])
    pid = detached.spawn(argv, p["log"], "the DNS host", is_host)
    detached.write_pidfile(p["pid"], pid)
    return pid
