"""How a command lets its caller go before its process ends.

Under netkitd a command runs in a forked child, and the `netkit`/`netkit-cni` client it serves
waits for that child's exit status. A command normally answers at its end. netkit-cni's DEL
answers once its change has committed (the attachment's address free, its rules and names gone
from the state): deleting the veth then still waits for the kernel (an RCU barrier, ~20 ms) while
the runtime already goes on; the state lock is held until it is done, so the next netkit command,
whoever runs it, starts after it. In-process (no daemon) nobody is waiting on another process:
`now()` does nothing and the command runs to its end as always.
"""
from __future__ import annotations

from typing import Callable

_hook: Callable[[int], None] | None = None


def install(hook: Callable[[int], None] | None) -> None:
    """Set (or clear) what `now` calls: netkitd's worker tells its client the exit status."""
    global _hook
    _hook = hook


def now(code: int = 0) -> bool:
    """Answer the caller with `code` now, once; True if someone was answered. The process goes
    on with its work, with stdin/stdout/stderr closed (nobody reads them any more)."""
    global _hook
    hook, _hook = _hook, None
    if hook is None:
        return False
    hook(code)
    return True
