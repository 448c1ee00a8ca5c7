"""Publish latency with 0, 100, 1000 (and, with --levels, 10 000) mappings present, in-process and as
a whole `netkit publish`, through the engine, with each firewall backend.

Runs itself inside a netkit sandbox, a fresh one per backend (the backend is set with
`firewall_backend` in a config file of its own). Setup: network benchnet 172.29.0.0/16 and
containers with --per-container published ports each (10: 100 containers = 1000 mappings; 100
makes 10 000 mappings with 100 containers). Measured: `ports.publish()` of one port on the
container `probe` (then an unpublish, measured too, to put it back), N times per phase; and the
whole CLI process `netkit publish HOSTPORT:80 probe`. Prints median and p90 in ms, and where the
median change spends its time: fsync (the intent journal and the state: crash safety, the disk's
cost), the firewall backend's apply, the conntrack clean-up.

    .venv/bin/python scripts/bench_publish.py [--rounds 40] [--levels 0,100,1000] [--per-container 10]
        [--settle MS] [--backends iptables-legacy,iptables-nft,nftables]
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
PER_CONTAINER = 10  # --per-container


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
        assert 20000 + have + PER_CONTAINER <= 40000, "the probe's port 40000 must stay free"
        i = have // PER_CONTAINER
        base = 20000 + i * PER_CONTAINER
        c = ctx()
        containers.create(c, containers.ContainerRequest(
            f"c{i}", "benchnet", publish=[f"{base}-{base + PER_CONTAINER - 1}:{1000}-{999 + PER_CONTAINER}"]))
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
    global PER_CONTAINER
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--backends", default="iptables-legacy,iptables-nft,nftables")
    ap.add_argument("--levels", default="0,100,1000")
    ap.add_argument("--per-container", type=int, default=PER_CONTAINER)
    ap.add_argument("--settle", type=float, default=0.0, help="milliseconds to wait (untimed) after every change")
    ap.add_argument("--backend", help=argparse.SUPPRESS)  # inside the sandbox: the one to measure
    args = ap.parse_args()
    if args.backend is None:  # one fresh sandbox per backend
        rc = 0
        for name in args.backends.split(","):
            rc |= subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable,
                                   os.path.abspath(__file__), "--rounds", str(args.rounds), "--levels", args.levels,
                                   "--per-container", str(args.per_container), "--settle", str(args.settle),
                                   "--backend", name], cwd=ROOT)
        return rc
    PER_CONTAINER = args.per_container
    return measure(args.backend, args.rounds, [int(x) for x in args.levels.split(",")], args.settle / 1000)


class Spent:
    """Time spent in a few functions during one timed call (wrapped in place, in-process)."""

    def __init__(self):
        self.now = {}

    def wrap(self, owner, attr: str, key: str) -> None:
        inner = getattr(owner, attr)

        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                self.now[key] = self.now.get(key, 0.0) + time.perf_counter() - t
        setattr(owner, attr, timed)

    def take(self) -> dict:
        out, self.now = self.now, {}
        return out


def measure(backend: str, rounds: int, levels: list[int], settle: float) -> int:
    import json
    import tempfile

    from netkit.engine import ports
    from netkit.kernel import conntrack, fw

    folder = tempfile.mkdtemp(prefix="bench-publish-")
    os.environ["NETKIT_STATE_DIR"] = folder
    os.environ["NETKIT_CONFIG"] = os.path.join(folder, "config.json")
    with open(os.environ["NETKIT_CONFIG"], "w") as fh:
        json.dump({"firewall_backend": backend}, fh)

    from netkit.engine import containers, networks

    c = ctx()
    networks.create(c, networks.NetworkRequest("benchnet", subnet="172.29.0.0/16"))
    containers.create(c, containers.ContainerRequest("probe", "benchnet"))
    c.close()
    spent = Spent()
    spent.wrap(os, "fsync", "fsync")
    spent.wrap(fw.get(backend), "apply", "firewall")
    spent.wrap(conntrack, "delete_mapping", "conntrack")
    have = 0
    print(f"[{backend}] publish latency (in-process ports.publish / unpublish of one port, {rounds} rounds each, "
          f"{settle * 1000:g} ms between changes)")
    for target in levels:
        have = add_containers(target, have)
        ctx_ = ctx()
        pub, unpub, parts = [], [], {"pub": [], "unpub": []}
        spent.take()
        for r in range(rounds):
            t = time.perf_counter()
            ports.publish(ctx_, "40000:80", "probe")
            pub.append(time.perf_counter() - t)
            parts["pub"].append(spent.take())
            time.sleep(settle)
            t = time.perf_counter()
            ports.unpublish(ctx_, "40000:80", "probe")
            unpub.append(time.perf_counter() - t)
            parts["unpub"].append(spent.take())
            time.sleep(settle)
        ctx_.close()

        def split(which):
            keys = ("fsync", "firewall", "conntrack") if which == "unpub" else ("fsync", "firewall")
            return ", ".join(f"{k} {statistics.median([p.get(k, 0.0) for p in parts[which]]) * 1000:.2f}" for k in keys)
        print(f"  {have:5d} mappings ({count_dnat():5d} DNAT entries): publish {fmt(pub)}   unpublish {fmt(unpub)}")
        print(f"        of which (medians, ms): publish {split('pub')};  unpublish {split('unpub')}")
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
