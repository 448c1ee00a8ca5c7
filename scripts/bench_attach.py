#!/usr/bin/env python3
"""Benchmark: bridge-mode `container create` (netns + veth + address + route + bridge port).

Prints median and p90 of N in-process creates through the engine, the 10th and 500th attach on
one network (the cost must not grow with the bridge's size: docs/facts.md, "IPv6 flooding"), and the
whole-process time of `netkit container create`. Runs itself inside a netkit sandbox.

    .venv/bin/python scripts/bench_attach.py [--n 100] [--big 500] [--cli 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def wait_idle(seconds: float = 3.0) -> None:
    """Netns teardown keeps the kernel busy for a while (docs/facts.md, "Teardown"); let it settle between phases."""
    time.sleep(seconds)


def main() -> None:
    from netkit import sandbox

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--big", type=int, default=500)
    parser.add_argument("--cli", type=int, default=10)
    args = parser.parse_args()
    if not sandbox.in_sandbox():
        sys.exit(subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable] + sys.argv))

    from netkit.engine import containers, networks
    from netkit.engine.context import Context

    ctx = Context()
    networks.create(ctx, networks.NetworkRequest("bench", subnet="10.200.0.0/16"))
    times = []
    for i in range(args.n):
        t0 = time.perf_counter()
        containers.create(ctx, containers.ContainerRequest(f"c{i}", net="bench"))
        times.append((time.perf_counter() - t0) * 1000)
    print(f"in-process create, N={args.n}: median {statistics.median(times):.2f} ms, p90 {pct(times, 0.9):.2f} ms")

    for i in range(args.n, args.big):
        t0 = time.perf_counter()
        containers.create(ctx, containers.ContainerRequest(f"c{i}", net="bench"))
        times.append((time.perf_counter() - t0) * 1000)
    window = lambda k: statistics.median(times[max(0, k - 5):k + 5])  # noqa: E731 - smooth single outliers
    print(f"attach #10: {window(9):.2f} ms, attach #{args.big}: {window(args.big - 1):.2f} ms "
          f"(median of 10 around each; ratio {window(args.big - 1) / window(9):.2f})")
    ctx.close()

    wait_idle()
    cli = []
    for i in range(args.cli):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "netkit", "container", "create", f"cli{i}", "--net", "bench"],
                       check=True, stdout=subprocess.DEVNULL)
        cli.append((time.perf_counter() - t0) * 1000)
    print(f"whole-process `netkit container create`: median {statistics.median(cli):.0f} ms, "
          f"p90 {pct(cli, 0.9):.0f} ms")


if __name__ == "__main__":
    main()
