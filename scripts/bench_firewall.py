"""Publish/unpublish latency of each firewall backend, with 0, 100, 1000 and 10 000 mappings present.

Runs itself inside a netkit sandbox. Each backend is driven directly (no engine, no state), the way
the reconciler's publish fast path drives it: a publish is one DNAT rule added as a delta
(`apply([Op A], thorough=False)` under the xtables lock); an unpublish is that rule deleted plus
the conntrack clean-up of the mapping (kernel/conntrack.py). The mappings present are DNAT rules
of other ports (set elements for nftables). Prints median and p90 per backend, side by side.

    .venv/bin/python scripts/bench_firewall.py [--rounds 30] [--backends iptables-legacy,iptables-nft,nftables]
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
LEVELS = (0, 100, 1000, 10000)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def dnat(port: int, i: int) -> str:
    return f"-p tcp -m tcp --dport {port} -j DNAT --to-destination 172.29.{i // 250}.{i % 250 + 2}:80"


def measure(name: str, rounds: int) -> dict[int, tuple[list[float], list[float]]]:
    from netkit import rules
    from netkit.kernel import conntrack, fw

    backend = fw.get(name)
    ok = backend.available()
    if not ok.ok:
        raise SystemExit(f"{name}: {ok.reason}")
    want = rules.plan([], [])  # netkit's empty chains and hooks
    with backend.locked():
        backend.apply(rules.diff(rules.netkit_part(backend.snapshot()), want))
    have, out = 0, {}
    for level in LEVELS:
        if level > have:
            backend.apply([rules.Op("nat", "A", "NETKIT", dnat(20000 + i, i)) for i in range(have, level)],
                          thorough=False)
            have = level
        probe = rules.Op("nat", "A", "NETKIT", dnat(60000, 0))
        gone = rules.Op("nat", "D", "NETKIT", probe.spec)
        pub, unpub, rule_only = [], [], []
        for _ in range(rounds):
            t = time.perf_counter()
            with backend.locked():
                backend.apply([probe], thorough=False)
            pub.append(time.perf_counter() - t)
            t = time.perf_counter()
            with backend.locked():
                backend.apply([gone], thorough=False)
            rule_only.append(time.perf_counter() - t)
            conntrack.delete_mapping("tcp", 60000, "172.29.0.2", 80)
            unpub.append(time.perf_counter() - t)
        out[level] = (pub, unpub, rule_only)
    backend.reset()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--backends", default="iptables-legacy,iptables-nft,nftables")
    args = ap.parse_args()
    names = args.backends.split(",")
    results = {}
    for name in names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        results[name] = measure(name, args.rounds)
    print(f"publish / unpublish of one mapping, in-process, median (p90) in ms, {args.rounds} rounds each")
    print("unpublish = rule delete + conntrack clean-up; [rule] = the rule delete alone (median)")
    print(f"{'mappings':>9} " + "".join(f"| {n:^41} " for n in names))
    print(f"{'':>9} " + "".join(f"| {'publish':^16}{'unpublish':^16}{'[rule]':>8} " for _ in names))
    for level in LEVELS:
        cells = []
        for name in names:
            pub, unpub, rule_only = results[name][level]
            cells.append(f"| {statistics.median(pub) * 1000:6.2f} ({pct(pub, 90) * 1000:6.2f}) "
                         f"{statistics.median(unpub) * 1000:6.2f} ({pct(unpub, 90) * 1000:6.2f}) "
                         f"[{statistics.median(rule_only) * 1000:6.2f}] ")
        print(f"{level:>9} " + "".join(cells))
    return 0


if __name__ == "__main__":
    from netkit import sandbox

    if not sandbox.in_sandbox():
        sys.exit(subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable,
                                  os.path.abspath(__file__)] + sys.argv[1:], cwd=ROOT))
    sys.exit(main())
