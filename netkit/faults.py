"""Test-only fault points: the crash-safety tests make netkit die (SIGKILL) or fail (an exception)
at the k-th side-effecting step of one command, to prove that every interruption is repaired.

Set NETKIT_FAULT_AT=k (1-based, counted over the whole process) and NETKIT_FAULT_MODE=kill|raise.
Unset (always, outside those tests), `point()` is one dictionary lookup and does nothing. Steps
counted: each kernel plan step (kernel/executor.py), the state commit (engine/context.py), each
derived after-commit step, and the DNS server's pidfile write (dns/supervisor.py).
"""
from __future__ import annotations

import os
import signal

from netkit.errors import EnvError

_count = 0


class InjectedFault(EnvError):
    """Raised at a fault point in NETKIT_FAULT_MODE=raise (as a failure the CLI reports in one line)."""


def point(label: str) -> None:
    global _count
    at = os.environ.get("NETKIT_FAULT_AT")
    if not at:
        return
    _count += 1
    if _count != int(at):
        return
    if os.environ.get("NETKIT_FAULT_MODE", "kill") == "raise":
        raise InjectedFault(f"injected fault at step {_count} ({label})")
    os.kill(os.getpid(), signal.SIGKILL)


def steps_seen() -> int:
    return _count
