#!/usr/bin/env python3
"""Cold start of whole-process netkit commands without netkitd (issue 14: "without the daemon no
slower than today"): medians of interleaved runs beside the interpreter's own start (the floor,
measured in the same run), and the import cost of the modules each path loads. Runs itself in a
netkit sandbox (container create/rm change network state).

    .venv/bin/python scripts/bench_coldstart.py [--n 15] [--before DIR]

--before DIR: also time another copy of the `netkit` package (e.g. `git archive main netkit |
tar -x -C DIR`), interleaved with this one in the same run, so before/after share the load.
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


def timed(argv: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    # cwd "/": python -c would put the current folder first on sys.path, ahead of PYTHONPATH.
    proc = subprocess.run(argv, capture_output=True, text=True, env=env or ENV, cwd="/")
    ms = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed: {proc.stdout}{proc.stderr}")
    return ms


# Import-only figures: what each path pays before doing any work.
IMPORTS = {
    "import netkit.kernel.links (netlink adapter)": "import netkit.kernel.links",
    "import every command group of the CLI": "import netkit.cli.main as m; getattr(m, 'load', lambda: None)()",
}


def main() -> None:
    from netkit import sandbox

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=15)
    parser.add_argument("--before", help="a folder holding another copy of the netkit package to time alongside")
    args = parser.parse_args()
    if not sandbox.in_sandbox():
        sys.exit(subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable] + sys.argv))
    timed([NETKIT, "network", "create", "cold", "--subnet", "10.201.0.0/16"])
    timed([NETKIT, "container", "create", "first", "--net", "cold"])  # the network's DNS server starts here
    rows: dict[str, list[float]] = {}

    versions = {"": ENV}
    if args.before:
        versions = {"before: ": {**ENV, "PYTHONPATH": os.path.abspath(args.before)}, "after:  ": ENV}

    def run(label: str, argv: list[str], env: dict = ENV) -> None:
        rows.setdefault(label, []).append(timed(argv, env))

    for i in range(args.n):  # interleaved, so that load on the machine spreads over every row
        run("python -c pass (floor)", [sys.executable, "-c", "pass"])
        run("import pyroute2 (the whole package)", [sys.executable, "-c", "import pyroute2"])
        for tag, env in versions.items():
            run(f"{tag}netkit --version", [NETKIT, "--version"], env)
            run(f"{tag}netkit network ls", [NETKIT, "network", "ls"], env)
            run(f"{tag}python -m netkit network ls", [sys.executable, "-m", "netkit", "network", "ls"], env)
            name = f"{tag[:1]}c{i}"
            run(f"{tag}netkit container create", [NETKIT, "container", "create", name, "--net", "cold"], env)
            run(f"{tag}netkit container rm", [NETKIT, "container", "rm", name], env)
            for label, code in IMPORTS.items():
                run(f"{tag}{label}", [sys.executable, "-c", code], env)
    print(f"whole-process medians of {args.n} interleaved runs, no daemon (NETKIT_DAEMON=0):")
    floor = statistics.median(rows["python -c pass (floor)"])

    def before_beside_after(row):
        return row[0].split(": ")[-1].strip(), not row[0].startswith("before")

    for label, values in sorted(rows.items(), key=before_beside_after):
        ms = statistics.median(values)
        print(f"  {label:54s} {ms:7.1f} ms   (floor + {ms - floor:6.1f})")


if __name__ == "__main__":
    main()
