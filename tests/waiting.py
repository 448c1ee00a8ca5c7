"""The one way a test waits for the kernel or a process: poll a condition until it holds, with a
generous bound (CI runs on a loaded 2-core machine), and fail saying what was awaited. Never a
fixed sleep: a sleep is too short on a busy machine and needlessly long on an idle one."""
from __future__ import annotations

import time

# Bounds are generous on purpose: a condition that holds returns at once, only a failure waits.
DEFAULT_TIMEOUT = 20.0


def wait_for(condition, timeout: float = DEFAULT_TIMEOUT, what: str = "a condition", interval: float = 0.02):
    """Return condition()'s first truthy value; fail the test if none came within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last value: {value!r})")
        time.sleep(interval)


def first_line(stream, timeout: float = DEFAULT_TIMEOUT, what: str = "a line") -> str:
    """The first line a child process writes to `stream` (its stdout or stderr pipe), within
    `timeout` s: a server that hangs before saying 'ready' fails the test instead of hanging it."""
    import select

    if not select.select([stream], [], [], timeout)[0]:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
    return stream.readline()
