"""The race that left one container unreachable from a whole host (test_overlay_engine's 30
containers, once): a command programmed the VXLAN device from a read older than the agent's last
programming, and `vxlan.program` (exact entries) deleted what the agent had just added. Forced here
in order, on a real VXLAN device: the newer programming first, then the stale one, which must be
skipped (cluster/programming.py), and a newer one after it still applies."""
from __future__ import annotations

import pytest

from netkit.cluster import programming
from netkit.kernel import vxlan

pytestmark = pytest.mark.root

VNI = 4321
REMOTE = ("02:42:0a:33:00:05", "198.18.1.13")  # a container on another host: MAC -> its host
NEIGH = ("10.51.0.5", "02:42:0a:33:00:05")


def test_a_stale_read_does_not_undo_a_newer_programming(tmp_path):
    vxlan.ensure(VNI, "127.0.0.1", "10.51.0.1", 24)
    try:
        run = str(tmp_path)
        # The agent, at revision 101, adds the container created at 101.
        assert programming.program_at(run, VNI, 101, frozenset({REMOTE}), frozenset({NEIGH})) == (2, 0)
        # The command read the store at 100 (before that container): skipped, the entries stay.
        assert programming.program_at(run, VNI, 100, frozenset(), frozenset()) is None
        assert vxlan.read(VNI) == (frozenset({REMOTE}), frozenset({NEIGH}))
        # Same revision again: applied (idempotent); a newer view that drops the container: removed.
        assert programming.program_at(run, VNI, 101, frozenset({REMOTE}), frozenset({NEIGH})) == (0, 0)
        assert programming.program_at(run, VNI, 102, frozenset(), frozenset()) == (0, 2)
        assert vxlan.read(VNI) == (frozenset(), frozenset())
    finally:
        vxlan.remove(VNI)
