"""Publish latency with 0, 100 and 1000 mappings present, in-process and as a whole `netkit publish`,
through the engine, with each firewall backend.

Runs itself inside a netkit sandbox, a fresh one per backend (the backend is set with
`firewall_backend` in a config file of its own). Setup: network benchnet 172.29.0.0/16 and
containers with 10 published ports each (100 containers = 1000 mappings). Measured:
`ports.publish()` of one port on the container `probe` (then an unpublish, measured too, to put it
back), N times per phase; and the whole CLI process `netkit publish HOSTPORT:80 probe`. Prints
median and p90 in ms.

    .venv/bin/python scripts/bench_publish.py [--rounds 40] [--backends iptables-legacy,iptables-nft,nftables]
                                              [--mappings 0,100,1000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PER_CONTAINER = 10


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def fmt(values):
    return f"median {statistics.median(values) * 1000:6.2f} ms   p90 {pct(values, 90) * 1000:6.2f} ms"


def ctx():
    from netkit.engine.context import Context

    return Context()


def add_containers(upto: int, have: int) -> int:
    from netkit.engine import containers

    while have < upto:
        i = have // PER_CONTAINER
        base = 20000 + i * PER_CONTAINER
        c = ctx()
        containers.create(c, containers.ContainerRequest(
            f"c{i}", "benchnet", publish=[f"{base}-{base + PER_CONTAINER - 1}:80-{79 + PER_CONTAINER}"]))
        c.close()
        have += PER_CONTAINER
    return have


def count_dnat() -> int:
    """DNAT entries netkit holds, read back through the active backend (rules or map elements)."""
    from netkit.engine import reconcile

    c = ctx()
    try:
        return sum(1 for spec in reconcile.kernel_rules(c).get("nat", {}).get("NETKIT", []) if "-j DNAT" in spec)
    finally:
        c.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--backends", default="iptables-legacy,iptables-nft,nftables")
    ap.add_argument("--mappings", default="0,100,1000", help="the phases: mappings present while measuring")
    ap.add_argument("--backend", help=argparse.SUPPRESS)  # inside the sandbox: the one to measure
    args = ap.parse_args()
    if args.backend is None:  # one fresh sandbox per backend
        rc = 0
        for name in args.backends.split(","):
            rc |= subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable,
                                   os.path.abspath(__file__), "--rounds", str(args.rounds), "--backend", name,
                                   "--mappings", args.mappings], cwd=ROOT)
        return rc
    return measure(args.backend, args.rounds, [int(m) for m in args.mappings.split(",")])


def measure(backend: str, rounds: int, phases: list[int]) -> int:
    import json
    import tempfile

    from netkit.engine import containers, networks, ports

    folder = tempfile.mkdtemp(prefix="bench-publish-")
    os.environ["NETKIT_STATE_DIR"] = folder
    os.environ["NETKIT_CONFIG"] = os.path.join(folder, "config.json")
    with open(os.environ["NETKIT_CONFIG"], "w") as fh:
        json.dump({"firewall_backend": backend}, fh)

    c = ctx()
    networks.create(c, networks.NetworkRequest("benchnet", subnet="172.29.0.0/16"))
    containers.create(c, containers.ContainerRequest("probe", "benchnet"))
    c.close()
    have = 0
    print(f"[{backend}] publish latency (in-process ports.publish / unpublish of one port, {rounds} rounds each)")
    for target in phases:
        have = add_containers(target, have)
        ctx_ = ctx()
        pub, unpub = [], []
        for r in range(rounds):
            t = time.perf_counter()
            ports.publish(ctx_, "40000:80", "probe")
            pub.append(time.perf_counter() - t)
            t = time.perf_counter()
            ports.unpublish(ctx_, "40000:80", "probe")
            unpub.append(time.perf_counter() - t)
        ctx_.close()
        print(f"  {have:5d} mappings ({count_dnat():5d} DNAT entries): publish {fmt(pub)}   unpublish {fmt(unpub)}")
    cli = []
    for r in range(max(5, rounds // 4)):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "netkit", "publish", "40000:80", "probe"], check=True,
                       stdout=subprocess.DEVNULL)
        cli.append(time.perf_counter() - t)
        subprocess.run([sys.executable, "-m", "netkit", "unpublish", "40000:80", "probe"], check=True,
                       stdout=subprocess.DEVNULL)
    print(f"[{backend}] whole process `netkit publish` with {have} mappings: {fmt(cli)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
