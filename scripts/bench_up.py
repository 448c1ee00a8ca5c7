#!/usr/bin/env python3
"""Benchmark: `netkit up` of a compose file with N containers vs N `netkit container create` commands.

Both build the same scene (one user network, N bridge-mode containers on it, every 10th with a
published port), each from an empty state in the same sandbox; `netkit down` and N `container rm`
are timed too. Prints the figures side by side. Runs itself inside a netkit sandbox.

    .venv/bin/python scripts/bench_up.py [--n 100]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NETKIT = [sys.executable, "-m", "netkit"]


def compose_text(n: int) -> str:
    lines = ["name: bench", "services:"]
    for i in range(n):
        lines += [f"  c{i}:", f"    container_name: c{i}", "    networks: [app]"]
        if i % 10 == 0:
            lines.append(f"    ports: ['{9000 + i}:80']")
    lines += ["networks:", "  app:", "    name: app", "    ipam: {config: [{subnet: 10.200.0.0/16}]}"]
    return "\n".join(lines) + "\n"


def timed(argv_list: list[list[str]]) -> float:
    t0 = time.perf_counter()
    for argv in argv_list:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def settle() -> None:
    time.sleep(3)  # netns teardown keeps the kernel busy for a while (docs/facts.md, "Teardown")


def main() -> None:
    from netkit import sandbox

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    if not sandbox.in_sandbox():
        sys.exit(subprocess.call(NETKIT + ["sandbox", "--", sys.executable] + sys.argv))
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "compose.yaml")
        with open(path, "w") as fh:
            fh.write(compose_text(n))
        up = timed([NETKIT + ["up", "-f", path]])
        again = timed([NETKIT + ["up", "-f", path]])
        down = timed([NETKIT + ["down", "-f", path]])
        settle()
        creates = [NETKIT + ["network", "create", "app", "--subnet", "10.200.0.0/16"]]
        for i in range(n):
            creates.append(NETKIT + ["container", "create", f"c{i}", "--net", "app"]
                           + (["-p", f"{9000 + i}:80"] if i % 10 == 0 else []))
        cli = timed(creates)
        removes = [NETKIT + ["container", "rm"] + [f"c{i}"] for i in range(n)] + [NETKIT + ["network", "rm", "app"]]
        cli_rm = timed(removes)
    print(f"{n} containers on one network, every 10th publishing a port:")
    print(f"  {'':34}{'netkit up/down':>16}{'CLI, one by one':>18}{'ratio':>8}")
    print(f"  {'create everything':34}{up:>14.2f} s{cli:>16.2f} s{cli / up:>7.1f}x")
    print(f"  {'remove everything':34}{down:>14.2f} s{cli_rm:>16.2f} s{cli_rm / down:>7.1f}x")
    print(f"  {'second `up` (nothing to change)':34}{again:>14.2f} s")


if __name__ == "__main__":
    main()
