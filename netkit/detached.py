"""Detached helper processes (a network's DNS server, the DNS host, a host's cluster agent): spawn
one so that it outlives the command that started it, wait until it says it is ready, find it
again by pidfile, and signal it only when it is provably ours. Imports only cheap stdlib modules."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import sys
import time
from collections.abc import Callable

from netkit.errors import EnvError

READY_TIMEOUT = 15.0  # start + dnslib import + bind take ~0.1 s idle; a loaded machine needs far more
STOP_TIMEOUT = 5.0
# The directory holding the netkit package, so a helper imports the same netkit as the CLI
# even when netkit is not installed and the CLI ran from a source tree.
PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextlib.contextmanager
def locked(lockfile: str, shared: bool = False):
    """Hold an flock on lockfile (created if missing) for the block."""
    os.makedirs(os.path.dirname(lockfile), exist_ok=True)
    fd = os.open(lockfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def write_pidfile(pidfile: str, pid: int) -> None:
    tmp = f"{pidfile}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{pid}\n")
    os.replace(tmp, pidfile)


def argv_of(pid: int | str) -> list[str]:
    """PID's command line ([] if it is gone; a zombie has an empty one too)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def runs_module(argv: list[str], module: str) -> bool:
    return ("-m", module) in zip(argv, argv[1:])


def log_tail(logfile: str, lines: int = 3) -> str:
    try:
        with open(logfile, errors="replace") as f:
            tail = [line.strip() for line in f.read().splitlines()[-lines:] if line.strip()]
    except OSError:
        tail = []
    return " | ".join(tail) or "no output"


def wait_exit(pidfd: int, timeout: float) -> bool:
    """Wait until the process behind pidfd exits (a pidfd polls readable then)."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(timeout * 1000))


def spawn(argv: list[str], logfile: str, what: str, is_ours: Callable[[int], bool]) -> int:
    """Double-fork `argv` (a `python -m ...` that accepts --ready-fd N) so init adopts it (it
    survives the caller, which is left with no zombie to reap) and return its PID once it wrote
    its ready byte; EnvError naming `what` and the log's tail otherwise."""
    r, w = os.pipe()
    argv = argv + ["--ready-fd", str(w)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PKG_ROOT, env.get("PYTHONPATH")) if p)
    os.makedirs(os.path.dirname(logfile), exist_ok=True)
    log_fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    child = os.fork()
    if child == 0:  # only os.* calls until exec: the parent may have had other threads
        try:
            os.close(r)
            os.setsid()  # own session: no SIGHUP/SIGINT from the CLI's terminal
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
            # The intermediate tells the caller the helper's PID through the same pipe the
            # helper later writes its ready byte to.
            os.write(w, f"{grandchild}\n".encode())
        finally:
            os._exit(0)
    os.close(w)
    os.close(log_fd)
    os.close(null_fd)
    os.waitpid(child, 0)
    try:
        pid, ready = _read_ready(r)
    finally:
        os.close(r)
    if ready and pid:
        return pid
    if pid:
        kill(pid, is_ours)  # bound nothing in time: do not leave it half-started
    how = "did not get ready" if pid else "could not be spawned"
    raise EnvError(f"{what} {how}: {log_tail(logfile)}")


def _read_ready(r: int) -> tuple[int | None, bool]:
    """Read "PID\n" (from the intermediate) and "R" (from the ready helper), in either order,
    until both arrived, EOF (everyone closed the pipe: the helper died) or timeout."""
    p = select.poll()
    p.register(r, select.POLLIN)
    data = b""
    deadline = time.monotonic() + READY_TIMEOUT
    while not (b"R" in data and b"\n" in data):
        left = deadline - time.monotonic()
        if left <= 0 or not p.poll(left * 1000):
            break
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    digits = data.replace(b"R", b"").split(b"\n")[0]
    return (int(digits) if digits.isdigit() else None), b"R" in data


def kill(pid: int, is_ours: Callable[[int], bool], timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM (then SIGKILL) PID if, and only if, is_ours(PID); wait for it to exit."""
    try:
        # Hold a pidfd from before the check: if PID is ours now, the signal cannot reach
        # some other process that reused the number meanwhile.
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not is_ours(pid):
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if not wait_exit(pidfd, timeout):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            wait_exit(pidfd, timeout)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child after all
        return True
    finally:
        os.close(pidfd)
