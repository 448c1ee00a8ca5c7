"""Program a host's VXLAN device from a view of the store at a known revision, never going back
to an older view than the one the device was last programmed from.

Two writers program the same device: the host agent (from its watch, in revision order) and the
command that just made a container (from a fresh read, so the container reaches the others when
the command returns). `vxlan.program` makes the entries *exactly* the wanted ones, so a writer
holding an older view removes what a newer one added: the command's read at revision 100, the
agent adding a container created at 101, then the command's program deleting it as stray. The
agent sees no later event for it, so the entry stays missing for good (a container unreachable
from a whole host). Hence, per device, a lock and the revision last programmed (a file in the
run folder): a view older than that is skipped, the kernel already holds a newer one.
"""
from __future__ import annotations

import fcntl
import os


def _stamp_path(run_dir: str, vni: int) -> str:
    return os.path.join(run_dir, "cluster", f"vxlan{vni}.revision")


def program_at(run_dir: str, vni: int, revision: int, fdb: frozenset, neigh: frozenset) -> tuple[int, int] | None:
    """vxlan.program(vni, fdb, neigh) if `revision` is not older than the device's last programming;
    (added, removed), or None when skipped as stale."""
    from netkit.kernel import vxlan

    path = _stamp_path(run_dir, vni)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+") as fh:
        # The lock spans read-stamp, program, write-stamp: two writers never interleave.
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        text = fh.read().strip()
        last = int(text) if text.isdigit() else 0
        if revision < last:
            return None
        result = vxlan.program(vni, fdb, neigh)
        fh.seek(0)
        fh.truncate()
        fh.write(str(revision))
        fh.flush()
        return result
