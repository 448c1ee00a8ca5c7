#!/usr/bin/env python3
"""Benchmark: `links.endpoint_add` alone (the regular endpoint: veth on the bridge, peer made in
the container's netns, addressed, default route), in-process, median of N, each on a fresh netns.
Two cases, taking turns so that both see the same load: the netns made by `NetnsAdd` on the same
Handles (as `netkit container create` does), and one made by `ip netns add` then attached (as
`netkit-cni ADD` gets it). Runs itself inside a netkit sandbox.

    .venv/bin/python scripts/bench_endpoint.py [--n 40]

The netkit it measures is the one `import netkit` finds first (PYTHONPATH before the install):
a checkout of another commit can be measured with PYTHONPATH=that/checkout.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after PYTHONPATH

WARM_UP = 3


def main() -> None:
    import netkit
    from netkit import ops, sandbox
    from netkit.kernel import links

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=40)
    args = parser.parse_args()
    if not sandbox.in_sandbox():
        sys.exit(subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable] + sys.argv))
    handles = links.Handles()
    links.bridge_add(handles, ops.BridgeAdd(name="br-bench", mtu=1500, address="10.9.0.1/16"))
    times: dict[str, list[float]] = {"netns from NetnsAdd (container create)": [],
                                     "attached netns (CNI ADD)": []}
    for i in range(args.n + WARM_UP):
        for case, (label, result) in enumerate(times.items()):
            name, k = f"b{case}x{i}", 2 + 2 * i + case
            if case == 0:
                links.netns_add(handles, ops.NetnsAdd(name))
            else:
                subprocess.run(["ip", "netns", "add", f"rt{name}"], check=True)
                links.netns_attach(handles, ops.NetnsAttach(name, f"/run/netns/rt{name}"))
            op = ops.EndpointAdd(name, f"veth{k:07x}", "eth0", "br-bench", 1500, f"02:42:0a:09:{k >> 8:02x}:{k & 255:02x}",
                                 f"10.9.{k >> 8}.{k & 255}", 16, "10.9.0.1")
            t0 = time.perf_counter()
            links.endpoint_add(handles, op)
            if i >= WARM_UP:
                result.append((time.perf_counter() - t0) * 1000)
    handles.close()
    print(f"links.endpoint_add in-process ({os.path.dirname(netkit.__file__)}), median of {args.n}:")
    for label, values in times.items():
        print(f"  {label:40s} {statistics.median(values):6.2f} ms (min {min(values):.2f})")


if __name__ == "__main__":
    main()
