"""Publish/unpublish latency of each firewall backend, with 0, 100, 1000 and 10 000 mappings present.

Runs itself inside a netkit sandbox. Each backend is driven directly (no engine, no state), the way
the reconciler's publish fast path drives it: a publish is one DNAT rule added as a delta
(`apply([Op A], thorough=False)` under the xtables lock); an unpublish is that rule deleted plus
the conntrack clean-up of the mapping (kernel/conntrack.py). The mappings present are DNAT rules
of other ports (set elements for nftables). Prints median and p90 per backend, side by side.

Beside each figure, measured in the same run on the same table, the floor: the same change made
by the backend's own tool, with nothing of netkit around it:
  iptables-legacy  `iptables-legacy-restore --noflush` (a process: libiptc reads the whole table,
                   the kernel replaces the whole table)
  iptables-nft     publish: `iptables-nft-restore --noflush` (a process; netkit runs the same);
                   unpublish: the same by rule text, and `delete rule ip nat NETKIT handle N`
                   through libnftables in-process (the kernel's cost of one rule deletion)
  nftables         the same nft script netkit renders, through libnftables in-process

--settle MS waits MS milliseconds (untimed) after every change: nf_tables frees what a change
deleted after an RCU grace period, and the next change that adds an xtables target (iptables-nft)
or closes a netfilter netlink socket (any iptables-nft-restore process) waits for it. Back to back
(the default) that wait lands on the next publish; changes further apart than the grace period
never see it.

    .venv/bin/python scripts/bench_firewall.py [--rounds 30] [--settle 0] [--backends iptables-legacy,iptables-nft,nftables]
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


def restore_tool(name: str):
    """Run a delta through the backend's own restore tool (the floor of the iptables backends)."""
    from netkit import programs, rules

    exe = programs.require("iptables-legacy-restore" if name == "iptables-legacy" else "iptables-nft-restore")

    def run(ops):
        subprocess.run([exe, "--noflush", "-w"], input="\n".join(rules.render(ops)) + "\n", text=True, check=True)
    return run


def nft_handle_of(spec_port: int) -> str:
    """The nf_tables handle of the probe's iptables-nft rule (looked up untimed)."""
    from netkit.kernel.fw import libnft

    out = libnft.check("list chain ip nat NETKIT\n", libnft.OUTPUT_HANDLE)
    return next(line.rsplit("# handle ", 1)[1] for line in out.splitlines() if f"dport {spec_port} " in line)


def nft_handle_delete(handle: str) -> None:
    """The kernel's cost of deleting one iptables-nft rule: by handle through libnftables."""
    from netkit.kernel.fw import libnft

    libnft.check(f"delete rule ip nat NETKIT handle {handle}\n")


def measure(name: str, rounds: int, settle: float) -> dict:
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
        t_ = {k: [] for k in ("pub", "unpub", "rule", "floor_pub", "floor_unpub", "floor_handle")}

        def timed(key, fn, *args):
            t = time.perf_counter()
            fn(*args)
            t_[key].append(time.perf_counter() - t)
            time.sleep(settle)

        for _ in range(rounds):
            t = time.perf_counter()
            with backend.locked():
                backend.apply([probe], thorough=False)
            t_["pub"].append(time.perf_counter() - t)
            time.sleep(settle)
            t = time.perf_counter()
            with backend.locked():
                backend.apply([gone], thorough=False)
            t_["rule"].append(time.perf_counter() - t)
            conntrack.delete_mapping("tcp", 60000, "172.29.0.2", 80)
            t_["unpub"].append(time.perf_counter() - t)
            time.sleep(settle)
            # the floor, on the same table
            if name == "nftables":
                from netkit.kernel.fw import libnft

                add, drop = "\n".join(backend.render([probe])) + "\n", "\n".join(backend.render([gone])) + "\n"
                timed("floor_pub", libnft.check, add)
                timed("floor_unpub", libnft.check, drop)
            else:
                tool = restore_tool(name)
                timed("floor_pub", tool, [probe])
                timed("floor_unpub", tool, [gone])
                if name == "iptables-nft":
                    tool([probe])
                    time.sleep(settle)
                    timed("floor_handle", nft_handle_delete, nft_handle_of(60000))
        out[level] = t_
    backend.reset()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--settle", type=float, default=0.0, help="milliseconds to wait (untimed) after every change")
    ap.add_argument("--backends", default="iptables-legacy,iptables-nft,nftables")
    args = ap.parse_args()
    names = args.backends.split(",")
    results = {}
    for name in names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        results[name] = measure(name, args.rounds, args.settle / 1000)
    med = lambda v: f"{statistics.median(v) * 1000:6.2f}" if v else "     -"  # noqa: E731
    p90 = lambda v: f"{pct(v, 90) * 1000:6.2f}" if v else "     -"  # noqa: E731
    print(f"publish / unpublish of one mapping, in-process, median (p90) in ms, {args.rounds} rounds each, "
          f"{args.settle:g} ms between changes")
    print("unpublish = rule delete + conntrack clean-up; [rule] = the rule delete alone (median);")
    print("floor = the same change by the backend's own tool (see the docstring); handle = iptables-nft rule "
          "deleted by handle through libnftables")
    for name in names:
        print(f"\n{name}")
        print(f"{'mappings':>9} | {'publish':^15} | {'floor':^15} | {'unpublish':^15} {'[rule]':>8} | "
              f"{'floor':^15} | {'handle':^6}")
        for level in LEVELS:
            r = results[name][level]
            print(f"{level:>9} | {med(r['pub'])} ({p90(r['pub'])}) | {med(r['floor_pub'])} ({p90(r['floor_pub'])}) | "
                  f"{med(r['unpub'])} ({p90(r['unpub'])}) [{med(r['rule'])}] | "
                  f"{med(r['floor_unpub'])} ({p90(r['floor_unpub'])}) | {med(r['floor_handle'])}")
    return 0


if __name__ == "__main__":
    from netkit import sandbox

    if not sandbox.in_sandbox():
        sys.exit(subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable,
                                  os.path.abspath(__file__)] + sys.argv[1:], cwd=ROOT))
    sys.exit(main())
