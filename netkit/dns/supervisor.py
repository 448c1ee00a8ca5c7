"""Start, check and stop a network's DNS server process (netkit.dns.server), detached from the CLI;
pidfile and log in RUN_DIR/dns/NETWORK.{pid,log}. Imports only cheap stdlib modules."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import sys
import time

from netkit import faults
from netkit.errors import EnvError

MODULE = "netkit.dns.server"
READY_TIMEOUT = 15.0  # start + dnslib import + bind take ~0.1 s idle; a loaded machine needs far more
STOP_TIMEOUT = 5.0
# The directory holding the netkit package, so the server imports the same netkit as the CLI
# even when netkit is not installed and the CLI ran from a source tree.
_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _paths(network: str, run_dir: str) -> tuple[str, str, str]:
    d = os.path.join(run_dir, "dns")
    return os.path.join(d, f"{network}.pid"), os.path.join(d, f"{network}.log"), os.path.join(d, f"{network}.lock")


@contextlib.contextmanager
def _locked(lockfile: str):
    """Serialise start/stop of one network's server between concurrent CLI processes."""
    os.makedirs(os.path.dirname(lockfile), exist_ok=True)
    fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _is_ours(pid: int, network: str) -> bool:
    """True if PID runs `python -m netkit.dns.server ... --network NETWORK` (a PID in a stale
    pidfile may have been reused by any other process, which we must never signal)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return False  # gone (a zombie has an empty cmdline and fails below too)
    pairs = list(zip(argv, argv[1:]))
    return ("-m", MODULE) in pairs and ("--network", network) in pairs


def _running_pid(network: str, pidfile: str) -> int | None:
    pid = _read_pid(pidfile)
    return pid if pid is not None and _is_ours(pid, network) else None


def _log_tail(logfile: str, lines: int = 3) -> str:
    try:
        with open(logfile, errors="replace") as f:
            tail = [line.strip() for line in f.read().splitlines()[-lines:] if line.strip()]
    except OSError:
        tail = []
    return " | ".join(tail) or "no output"


def _wait_exit(pidfd: int, timeout: float) -> bool:
    """Wait until the process behind pidfd exits (a pidfd polls readable then)."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(timeout * 1000))


def _spawn(network: str, listen_ip: str, port: int, records_file: str, logfile: str) -> int:
    """Double-fork the server so init adopts it (it survives the CLI, which is left with no
    zombie to reap) and return its PID once it has bound its sockets; EnvError otherwise."""
    r, w = os.pipe()
    argv = [sys.executable, "-m", MODULE, "--listen", listen_ip, "--port", str(port),
            "--records", os.path.abspath(records_file), "--ready-fd", str(w), "--network", network]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_ROOT, env.get("PYTHONPATH")) if p)
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
            # The intermediate tells the CLI the server's PID through the same pipe the
            # server later writes its ready byte to.
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
        _kill(pid, network)  # bound nothing in time: do not leave it half-started
    what = "did not get ready" if pid else "could not be spawned"
    raise EnvError(f"DNS server for network {network} on {listen_ip}:{port} {what}: {_log_tail(logfile)}")


def _read_ready(r: int) -> tuple[int | None, bool]:
    """Read "PID\n" (from the intermediate) and "R" (from the bound server), in either order,
    until both arrived, EOF (everyone closed the pipe: the server died) or timeout."""
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


def _kill(pid: int, network: str) -> bool:
    """SIGTERM (then SIGKILL) PID if, and only if, it is our server for NETWORK; wait for it."""
    try:
        # Hold a pidfd from before the check: if PID is ours now, the signal cannot reach
        # some other process that reused the number meanwhile.
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not _is_ours(pid, network):
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if not _wait_exit(pidfd, STOP_TIMEOUT):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            _wait_exit(pidfd, STOP_TIMEOUT)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child after all
        return True
    finally:
        os.close(pidfd)


def servers() -> list[tuple[str, int]]:
    """(network, pid) of every netkit DNS server running on this host (found by its argv, so
    also one whose pidfile a crash never wrote). Only servers in this network namespace: hosts
    that share a PID namespace (`netkit sandbox --hosts`) each have a server of a network `ov`."""
    found = []
    here = os.stat("/proc/self/ns/net")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
            there = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (there.st_dev, there.st_ino) != (here.st_dev, here.st_ino):
            continue
        pairs = dict(zip(argv, argv[1:]))
        if pairs.get("-m") == MODULE and "--network" in pairs:
            found.append((pairs["--network"], int(entry)))
    return found


def orphans(run_dir: str) -> list[tuple[str, int]]:
    """Servers no pidfile names (a kill between spawn and pidfile): they hold the network's
    port 53, so a new server could never bind."""
    return [(net, pid) for net, pid in servers() if _read_pid(_paths(net, run_dir)[0]) != pid]


def stop_orphans(network: str | None, run_dir: str) -> list[tuple[str, int]]:
    """Stop the orphaned servers (of one network, or all); those stopped."""
    return [(net, pid) for net, pid in orphans(run_dir) if network in (None, net) and _kill(pid, net)]


def _write_pidfile(pidfile: str, pid: int) -> None:
    tmp = f"{pidfile}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{pid}\n")
    os.replace(tmp, pidfile)


def _start(network: str, listen_ip: str, records_file: str, run_dir: str, port: int, reuse: bool) -> int:
    pidfile, logfile, lockfile = _paths(network, run_dir)
    with _locked(lockfile):
        pid = _running_pid(network, pidfile)
        if pid is not None:
            if reuse:
                return pid
            raise EnvError(f"DNS server for network {network} is already running (pid {pid})")
        stop_orphans(network, run_dir)  # an orphan of a killed start holds the port
        pid = _spawn(network, listen_ip, port, records_file, logfile)
        faults.point("dns-pidfile")  # test-only (netkit/faults.py): a kill here makes an orphan
        _write_pidfile(pidfile, pid)
        return pid


def start(network: str, listen_ip: str, records_file: str, run_dir: str, port: int = 53) -> int:
    """Spawn the network's DNS server detached, wait until it listens, write its pidfile; its PID."""
    return _start(network, listen_ip, records_file, run_dir, port, reuse=False)


def ensure_running(network: str, listen_ip: str, records_file: str, run_dir: str, port: int = 53) -> int:
    """PID of the network's running DNS server, started first if it is not running."""
    return _start(network, listen_ip, records_file, run_dir, port, reuse=True)


def is_running(network: str, run_dir: str) -> bool:
    """True if the pidfile names a live netkit DNS server for this network."""
    return _running_pid(network, _paths(network, run_dir)[0]) is not None


def stop(network: str, run_dir: str) -> bool:
    """Stop the network's DNS server and remove its pidfile; True if one was stopped. A PID
    that is not our server for this network is left alone (only the stale pidfile goes)."""
    pidfile, _, lockfile = _paths(network, run_dir)
    with _locked(lockfile):
        pid = _read_pid(pidfile)
        stopped = pid is not None and _kill(pid, network)
        with contextlib.suppress(FileNotFoundError):
            os.remove(pidfile)
        return bool(stop_orphans(network, run_dir)) or stopped
