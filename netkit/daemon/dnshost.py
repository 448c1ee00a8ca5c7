"""netkitd's side of the DNS host (netkit.dns.host): start it when netkitd starts (it takes over
the networks whose own DNS servers run), watch it through a pidfd in netkitd's loop and start it
again when it dies, and give every network back to a server of its own when netkitd stops, so
that without netkitd DNS is served exactly as before (one process per network).

The host is a separate, detached process rather than threads of netkitd: netkitd forks a child
per request, and forking a process that runs threads is unsafe. netkitd's parent only forks and
execs it (detached.spawn) and holds its pidfd; its children close that pidfd. After a re-exec of
netkitd (a new netkit on disk) the new image finds the host answering: it keeps it if its DNS code
is unchanged, else a new host binds beside it and it stops (supervisor.take_over).
"""
from __future__ import annotations

import os
import sys
import time

from netkit.dns import supervisor

RESTART_BACKOFF = 2.0  # after a failed start: the next try (a crash loop must not spin)


def log(message: str) -> None:
    print(f"netkitd[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


class DnsHosting:
    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.next_try = 0.0
        self.restarts = 0

    def start(self) -> int | None:
        """Start (or find) the host and watch it; its pidfd, or None (retried by due())."""
        self.next_try = time.monotonic() + RESTART_BACKOFF
        try:
            pid = supervisor.take_over(self.run_dir)
            self.pidfd = os.pidfd_open(pid)  # close-on-exec; children close it (close_in_child)
        except Exception as err:  # noqa: BLE001 - netkitd serves its commands whatever befalls DNS
            log(f"DNS host not running: {err} (networks' DNS is not served; next try in {RESTART_BACKOFF:.0f} s)")
            self.pid = self.pidfd = None
            return None
        self.pid = pid
        log(f"DNS host pid {pid} serves the networks' DNS")
        return self.pidfd

    def due(self) -> bool:
        return self.pidfd is None and time.monotonic() >= self.next_try

    def exited(self) -> int | None:
        """The host's pidfd became readable: it died. Start it again; the new pidfd or None."""
        self._close()
        self.restarts += 1
        log(f"DNS host pid {self.pid} exited: starting it again")
        return self.start()

    def _close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def close_in_child(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)

    def stop(self, give_back: bool) -> None:
        """netkitd stops: hand every network back to its own server (or, before a re-exec, keep
        the host for the next image)."""
        self._close()
        if not give_back:
            return
        try:
            started, failed = supervisor.give_back(self.run_dir)
        except Exception as err:  # noqa: BLE001 - netkitd must still stop cleanly
            log(f"cannot give the networks' DNS back: {err} (`netkit doctor --fix` restarts their servers)")
            return
        if started:
            log(f"DNS given back to {len(started)} per-network server(s)")
        for line in failed:
            log(f"{line} (`netkit doctor --fix` tries again)")

    def status(self) -> dict:
        return {"pid": self.pid if self.pidfd is not None else None, "restarts": self.restarts}
