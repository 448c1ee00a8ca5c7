"""Start, find and stop this host's agent (netkit.cluster.agent), detached from the CLI like the
DNS servers are; pidfile and log in RUN_DIR/cluster/agent.{pid,log}. Cheap stdlib imports only."""
from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import sys
import time

from netkit.errors import EnvError

MODULE = "netkit.cluster.agent"
READY_TIMEOUT = 10.0
_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _paths(run_dir: str) -> tuple[str, str, str]:
    d = os.path.join(run_dir, "cluster")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, "agent.pid"), os.path.join(d, "agent.log"), os.path.join(d, "agent.lock")


def _is_agent(pid: int) -> bool:
    """PID runs our module (a stale pidfile's number may belong to anyone now)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return ("-m", MODULE) in zip(argv, argv[1:])


def running_pid(run_dir: str) -> int | None:
    pidfile = _paths(run_dir)[0]
    try:
        with open(pidfile) as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_agent(pid) else None


def _tail(logfile: str) -> str:
    try:
        with open(logfile, errors="replace") as fh:
            lines = [ln.strip() for ln in fh.read().splitlines() if ln.strip()]
    except OSError:
        lines = []
    return lines[-1] if lines else "no output"


def ensure_running(url: str, host: str, advertise: str, run_dir: str, ttl: int | None = None) -> int:
    """PID of this host's agent, started (and waited for: registered and synced) if not running."""
    pidfile, logfile, lockfile = _paths(run_dir)
    fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        pid = running_pid(run_dir)
        if pid is not None:
            return pid
        pid = _spawn(url, host, advertise, logfile, ttl)
        tmp = pidfile + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{pid}\n")
        os.replace(tmp, pidfile)
        return pid
    finally:
        os.close(fd)


def _spawn(url: str, host: str, advertise: str, logfile: str, ttl: int | None) -> int:
    r, w = os.pipe()
    argv = [sys.executable, "-m", MODULE, "--store", url, "--host", host, "--advertise", advertise,
            "--ready-fd", str(w)] + (["--ttl", str(ttl)] if ttl else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_ROOT, env.get("PYTHONPATH")) if p)
    log_fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    child = os.fork()
    if child == 0:  # os.* only until exec
        try:
            os.close(r)
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                os.dup2(null_fd, 0)
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
                os.set_inheritable(w, True)
                os.chdir("/")
                try:
                    os.execve(sys.executable, argv, env)
                except OSError as err:
                    os.write(2, f"exec {sys.executable} failed: {err}\n".encode())
                os._exit(127)
            os.write(w, f"{grandchild}\n".encode())
        finally:
            os._exit(0)
    os.close(w)
    os.close(log_fd)
    os.close(null_fd)
    os.waitpid(child, 0)
    data, deadline = b"", time.monotonic() + READY_TIMEOUT
    poller = select.poll()
    poller.register(r, select.POLLIN)
    try:
        while not (b"R" in data and b"\n" in data):
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                break
            chunk = os.read(r, 64)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
    digits = data.replace(b"R", b"").split(b"\n")[0]
    pid = int(digits) if digits.isdigit() else None
    if pid and b"R" in data:
        return pid
    if pid:
        _kill(pid)
    raise EnvError(f"the host agent did not get ready (store {url}): {_tail(logfile)}")


def _kill(pid: int) -> bool:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not _is_agent(pid):
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(5000):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return True
    finally:
        os.close(pidfd)


def stop(run_dir: str) -> bool:
    pid = running_pid(run_dir)
    stopped = pid is not None and _kill(pid)
    with contextlib.suppress(FileNotFoundError):
        os.remove(_paths(run_dir)[0])
    return stopped
