"""Test-only fault points: the crash-safety tests make netkit die (SIGKILL) or fail (an exception)
at the k-th side-effecting step of one command, to prove that every interruption is repaired.

Set NETKIT_FAULT_AT=k (1-based, counted over the whole process) or NETKIT_FAULT_AT=LABEL (the first
point of that label) and NETKIT_FAULT_MODE=kill|raise|stop (stop: SIGSTOP, so that a test can look
at the half-way point and then let the process go on with SIGCONT). Unset (always, outside those
tests), `point()` is one dictionary lookup and does nothing. Steps
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
    if at != label and (not at.isdigit() or _count != int(at)):
        return
    mode = os.environ.get("NETKIT_FAULT_MODE", "kill")
    if mode == "raise":
        raise InjectedFault(f"injected fault at step {_count} ({label})")
    if mode == "stop":
        os.environ.pop("NETKIT_FAULT_AT")  # once
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    os.kill(os.getpid(), signal.SIGKILL)


def steps_seen() -> int:
    return _count
