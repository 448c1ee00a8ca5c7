"""Name the netns of a container Docker is still starting after its netkit attachment (`rt-...`):
the process the driver's Join starts when Docker's netns does not exist yet (`docker run`: runc
makes it after the Join).

    python -m netkit.dockerplugin.pin NETWORK ENDPOINT_ID HOST_IFNAME SANDBOX_KEY

A fresh interpreter, not a fork of the serving child: that child may hold an open SQLite
connection to netkit's state, and a connection must not live across a fork (the child's own
would fail with "locking protocol"). It waits for Docker to mount the netns at SANDBOX_KEY, then
names it (re-checked under the state lock); it gives up when the attachment's host veth is gone
(Leave came first) or after WAIT seconds.
"""
from __future__ import annotations

import os
import sys
import time

WAIT = 120.0  # image unpack and runc start on a loaded machine


def main(argv: list[str]) -> int:
    network, endpoint_id, host_ifname, sandbox = argv
    from netkit import adapter
    from netkit.kernel import netns

    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and os.path.exists(f"/sys/class/net/{host_ifname}"):
        if netns.is_netns_file(sandbox):
            adapter.pin_netns(network, endpoint_id, "eth0", sandbox)
            return 0
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
