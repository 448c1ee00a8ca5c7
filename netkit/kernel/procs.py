"""Processes inside a container's namespaces: find them by their /proc/PID/ns/net link (the same
nsfs inode as the container's /run/netns file), and end them by PID (`container rm -f`)."""
from __future__ import annotations

import os
import signal
import time


def _ns_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


def netns_pids(netns_path: str) -> list[tuple[int, str]]:
    """(PID, command name) of every process whose network namespace is the one at netns_path."""
    want = _ns_key(netns_path)
    if want is None:
        return []
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        if _ns_key(f"/proc/{entry}/ns/net") == want:
            found.append((int(entry), _comm(int(entry))))
    return sorted(found)


def kill(pids: tuple[int, ...], wait: float = 2.0) -> None:
    """SIGKILL each PID, then wait (bounded) until they are gone, so that the namespace is free."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        alive = [p for p in pids if _running(p)]
        if not alive:
            return
        time.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie holds no namespace
    except OSError:
        return False
