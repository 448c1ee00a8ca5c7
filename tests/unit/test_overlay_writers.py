"""Every programming of a VXLAN device from a view of the store goes through
cluster/programming.py, whose per-device revision lock keeps a stale read from deleting entries a
newer one added (the race behind a container unreachable from a whole host)."""
from __future__ import annotations

import pathlib
import re

import netkit

ROOT = pathlib.Path(netkit.__file__).parent


def test_only_the_revision_lock_calls_vxlan_program():
    callers = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                     if re.search(r"\bvxlan\.program\(", p.read_text()))
    assert callers == ["cluster/programming.py"], callers
