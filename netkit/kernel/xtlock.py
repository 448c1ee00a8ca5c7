"""The xtables lock (XTABLES_LOCKFILE or /run/xtables.lock, what `iptables -w` takes), re-entrant
within the process: held around every read-diff-apply of every firewall backend (legacy,
iptables-nft, nftables) so that two netkit processes, or netkit and a locking `iptables`, never
interleave. The one implementation: kernel/firewall.py and kernel/fw/ both use it.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager

from netkit.errors import EnvError

DEFAULT_LOCKFILE = "/run/xtables.lock"
TIMEOUT = 10.0


def lockfile() -> str:
    return os.environ.get("XTABLES_LOCKFILE") or DEFAULT_LOCKFILE


class XtablesLock:
    def __init__(self):
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def held(self):
        if self._depth == 0:
            path = lockfile()
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as err:
                raise EnvError(f"cannot open the xtables lock {path}: {err.strerror}") from None
            deadline, delay = time.monotonic() + TIMEOUT, 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        os.close(fd)
                        raise EnvError(f"another program has held the xtables lock {path} for {TIMEOUT:.0f} s; "
                                       "try again") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            self._fd = fd
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None


_SHARED: XtablesLock | None = None


def shared() -> XtablesLock:
    """The process's one lock holder: every backend uses it, so holding two backends' locks at
    once (a backend switch resets the old one inside the new one's sync) is one re-entrant flock,
    not two open files of which the second waits for the first forever."""
    global _SHARED
    if _SHARED is None:
        _SHARED = XtablesLock()
    return _SHARED
