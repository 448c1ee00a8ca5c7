#!/usr/bin/env python3
"""Cold start of whole-process netkit commands without netkitd (issue 14: "without the daemon no
slower than today"): medians of interleaved runs beside the interpreter's own start (the floor,
measured in the same run), and the import cost of the modules each path loads. Runs itself in a
netkit sandbox (container create/rm change network state).

    .venv/bin/python scripts/bench_coldstart.py [--n 15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

BIN = os.path.dirname(sys.executable)
NETKIT = os.path.join(BIN, "netkit")
ENV = {**os.environ, "NETKIT_DAEMON": "0"}


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    ms = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed: {proc.stdout}{proc.stderr}")
    return ms


# Import-only figures: what each path pays before doing any work.
IMPORTS = {
    "import pyroute2 (the whole package)": "import pyroute2",
    "import netkit.kernel.links (netlink adapter)": "import netkit.kernel.links",
    "import netkit.cli.main (every command group)": "import netkit.cli.main",
}


def main() -> None:
    from netkit import sandbox

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=15)
    args = parser.parse_args()
    if not sandbox.in_sandbox():
        sys.exit(subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable] + sys.argv))
    timed([NETKIT, "network", "create", "cold", "--subnet", "10.201.0.0/16"])
    timed([NETKIT, "container", "create", "first", "--net", "cold"])  # the network's DNS server starts here
    rows: dict[str, list[float]] = {}

    def run(label: str, argv: list[str]) -> None:
        rows.setdefault(label, []).append(timed(argv))

    for i in range(args.n):  # interleaved, so that load on the machine spreads over every row
        run("python -c pass (floor)", [sys.executable, "-c", "pass"])
        run("netkit --version", [NETKIT, "--version"])
        run("netkit network ls", [NETKIT, "network", "ls"])
        run("python -m netkit network ls", [sys.executable, "-m", "netkit", "network", "ls"])
        run("netkit container create", [NETKIT, "container", "create", f"c{i}", "--net", "cold"])
        run("netkit container rm", [NETKIT, "container", "rm", f"c{i}"])
        for label, code in IMPORTS.items():
            run(label, [sys.executable, "-c", code])
    print(f"whole-process medians of {args.n} interleaved runs, no daemon (NETKIT_DAEMON=0):")
    floor = statistics.median(rows["python -c pass (floor)"])
    for label, values in rows.items():
        ms = statistics.median(values)
        print(f"  {label:46s} {ms:7.1f} ms   (floor + {ms - floor:6.1f})")


if __name__ == "__main__":
    main()
