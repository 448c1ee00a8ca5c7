"""`netkit daemon run|start|stop|status`: netkitd, the warm engine (see netkit.daemon)."""
from __future__ import annotations

import json as json_mod
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Optional

import typer

from netkit.cli import render
from netkit.cli.app import JSON_OPT, group
from netkit.errors import EnvError

daemon_app = group("daemon", "netkitd: keep the engine warm so that each netkit command skips ~200 ms of start-up.")

START_TIMEOUT = 15.0  # interpreter + warm-up imports take ~0.5 s on an idle 2-core machine
STOP_TIMEOUT = 40.0  # longer than the daemon's own grace for commands in flight
DOCKER_OPT = typer.Option(None, "--docker-socket",
                          help="Also serve Docker's network plugin protocol here, e.g. /run/docker/plugins/netkit.sock.")


def _require_root() -> None:
    if os.geteuid() != 0:
        raise EnvError("netkitd serves root only and must run as root (try: sudo netkit daemon ...)")


def query_status() -> dict | None:
    """The running daemon's status, or None if nobody answers on the socket."""
    from netkit.daemon import protocol

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    try:
        sock.connect(protocol.socket_path())
        protocol.send(sock, {"program": "status"})
        reply, _ = protocol.recv(sock)
    except (OSError, protocol.ProtocolError):
        return None
    finally:
        sock.close()
    return (reply or {}).get("status")


def _options(docker_socket: Optional[str]) -> list[str]:
    return ["--docker-socket", os.path.abspath(docker_socket)] if docker_socket else []


@daemon_app.command("run")
def run(docker_socket: Optional[str] = DOCKER_OPT):
    """Serve in the foreground (for systemd: see contrib/netkitd.service); stop with Ctrl-C or SIGTERM."""
    from netkit.cli.app import app, run_app
    from netkit.cni.plugin import main as cni_main
    from netkit.daemon import protocol, server

    _require_root()
    try:
        code = server.serve(docker_socket, protocol.pidfile_path(), _options(docker_socket),
                            {"netkit": run_app, "cni": cni_main}, app)
    except OSError as err:
        raise EnvError(f"netkitd cannot start: {err}") from None
    sys.exit(code)


def _log_tail(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            lines = [line.strip() for line in fh.read().splitlines() if line.strip()]
    except OSError:
        return "no log"
    return " | ".join(lines[-3:]) or "no output"


@daemon_app.command("start")
def start(docker_socket: Optional[str] = DOCKER_OPT):
    """Start netkitd in the background; returns once it serves (log in RUN_DIR/netkitd.log)."""
    from netkit.daemon import protocol

    _require_root()
    status = query_status()
    if status:
        render.emit(f"netkitd is already running (pid {status['pid']})")
        return
    os.makedirs(protocol.run_dir(), mode=0o755, exist_ok=True)
    logfile = os.path.join(protocol.run_dir(), "netkitd.log")
    with open(logfile, "ab") as log, open(os.devnull, "rb") as null:
        proc = subprocess.Popen([sys.executable, "-m", "netkit", "daemon", "run"] + _options(docker_socket),
                                stdin=null, stdout=log, stderr=log, start_new_session=True, cwd="/")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        status = query_status()
        if status and status["pid"] == proc.pid:
            render.emit(f"netkitd started (pid {proc.pid}, socket {protocol.socket_path()})")
            return
        if proc.poll() is not None:
            raise EnvError(f"netkitd exited with status {proc.returncode}: {_log_tail(logfile)}")
        time.sleep(0.05)
    proc.kill()
    raise EnvError(f"netkitd did not answer within {START_TIMEOUT:.0f} s: {_log_tail(logfile)}")


def _daemon_pid() -> int | None:
    """The PID in the pidfile, if that process is a netkit daemon (PIDs get reused)."""
    from netkit.daemon import protocol

    try:
        with open(protocol.pidfile_path()) as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except (OSError, ValueError):
        return None
    return pid if any("netkit" in a for a in argv) and "daemon" in argv and "run" in argv else None


@daemon_app.command("stop")
def stop():
    """Stop netkitd (commands it is running finish first)."""
    _require_root()
    pid = _daemon_pid()
    if pid is None:
        render.emit("netkitd is not running")
        return
    pidfd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        import select

        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(STOP_TIMEOUT * 1000):
            raise EnvError(f"netkitd (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s; "
                           f"its log: {_log_tail(os.path.join(os.path.dirname(_pidfile()), 'netkitd.log'))}")
    finally:
        os.close(pidfd)
    render.emit(f"netkitd stopped (pid {pid})")


def _pidfile() -> str:
    from netkit.daemon import protocol

    return protocol.pidfile_path()


@daemon_app.command("status")
def status(json: bool = JSON_OPT):
    """Whether netkitd runs, and what it has served; exit 1 if it does not run."""
    from netkit.daemon import protocol

    info = query_status()
    if json:
        # "up": whether it answers; "running": how many commands it runs now (0 when down).
        render.emit_json({"up": bool(info), "running": 0, **(info or {})})
    elif info:
        render.emit(f"netkitd running: pid {info['pid']}, up {info['uptime']} s, served {info['served']} requests, "
                    f"{info['running']} running now")
        current = protocol.fingerprint()
        if info["version"] != current:
            render.emit("  its netkit differs from this one: commands run in-process until it restarts itself")
        for path, kind in info["sockets"].items():
            render.emit(f"  {kind} socket: {path}")
        dns = info.get("dns_host") or {}
        if dns.get("pid"):
            render.emit(f"  DNS host: pid {dns['pid']} serves every network's DNS ({dns['restarts']} restart(s))")
        elif "dns_host" in info:
            render.emit("  DNS host: not running (see `netkit doctor`)")
    else:
        render.emit(f"netkitd is not running (no answer on {protocol.socket_path()})")
    if not info:
        sys.exit(1)
