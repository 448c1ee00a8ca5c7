"""Start, find and stop this host's agent (netkit.cluster.agent), detached from the CLI like the
DNS servers are (netkit/detached.py); pidfile and log in RUN_DIR/cluster/agent.{pid,log}. Cheap
stdlib imports only."""
from __future__ import annotations

import contextlib
import os
import sys

from netkit import detached

MODULE = "netkit.cluster.agent"


def _paths(run_dir: str) -> tuple[str, str, str]:
    d = os.path.join(run_dir, "cluster")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, "agent.pid"), os.path.join(d, "agent.log"), os.path.join(d, "agent.lock")


def _is_agent(pid: int) -> bool:
    """PID runs our module (a stale pidfile's number may belong to anyone now)."""
    return detached.runs_module(detached.argv_of(pid), MODULE)


def running_pid(run_dir: str) -> int | None:
    pid = detached.read_pid(_paths(run_dir)[0])
    return pid if pid is not None and _is_agent(pid) else None


def ensure_running(url: str, host: str, advertise: str, run_dir: str, ttl: int | None = None) -> int:
    """PID of this host's agent, started (and waited for: registered and synced) if not running."""
    pidfile, logfile, lockfile = _paths(run_dir)
    with detached.locked(lockfile):
        pid = running_pid(run_dir)
        if pid is not None:
            return pid
        argv = [sys.executable, "-m", MODULE, "--store", url, "--host", host, "--advertise", advertise] + \
            (["--ttl", str(ttl)] if ttl else [])
        pid = detached.spawn(argv, logfile, f"the host agent (store {url})", _is_agent)
        detached.write_pidfile(pidfile, pid)
        return pid


def stop(run_dir: str) -> bool:
    pid = running_pid(run_dir)
    stopped = pid is not None and detached.kill(pid, _is_agent)
    with contextlib.suppress(FileNotFoundError):
        os.remove(_paths(run_dir)[0])
    return stopped
