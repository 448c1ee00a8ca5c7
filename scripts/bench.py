#!/usr/bin/env python3
"""Benchmark for the warm engine (issue 14), one run, side by side: whole-process commands with
netkitd up and without it, `netkit-cni` against the reference CNI bridge plugin (ADD and DEL, each
on a real netns made by `ip netns add`), and the daemon's memory. Runs itself in a netkit sandbox.

    .venv/bin/python scripts/bench.py [--n 15]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BIN = os.path.dirname(sys.executable)
NETKIT = os.path.join(BIN, "netkit")
NETKIT_CNI = os.path.join(BIN, "netkit-cni")
BRIDGE = "/usr/lib/cni/bridge"
OFF = {"NETKIT_DAEMON": "0"}


def timed(argv: list[str], env: dict | None = None, stdin: str | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env={**os.environ, **(env or {})})
    ms = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed: {proc.stdout}{proc.stderr}")
    return ms


def sh(cmd: str) -> None:
    subprocess.run(["bash", "-c", cmd], check=True)


def med(values: list[float]) -> float:
    return statistics.median(values)


def cni_env(command: str, cid: str, netns: str) -> dict:
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
            "CNI_PATH": "/usr/lib/cni"}


def cni_round(plugin: str, conf: dict, prefix: str, n: int, env: dict | None = None) -> tuple[list[float], list[float]]:
    """n ADDs then n DELs of `plugin`, each on its own fresh netns; (add ms, del ms)."""
    return cni_rounds([(plugin, conf, prefix, env)], n)[0]


def cni_rounds(plugins: list[tuple[str, dict, str, dict | None]], n: int) -> list[tuple[list[float], list[float]]]:
    """n ADDs of each (plugin, conf, netns prefix, env), taking turns (so that each sees the
    same load on a shared machine), then n DELs the same way; (add ms, del ms) per plugin."""
    times: list[tuple[list[float], list[float]]] = [([], []) for _ in plugins]
    for command, column in (("ADD", 0), ("DEL", 1)):
        for i in range(n):
            for (plugin, conf, prefix, env), result in zip(plugins, times):
                if command == "ADD":
                    sh(f"ip netns add {prefix}{i}")
                cid = f"{prefix}{i}"
                result[column].append(timed([plugin], {**cni_env(command, cid, f"/run/netns/{cid}"), **(env or {})},
                                            json.dumps(conf)))
        if command == "ADD":
            time.sleep(2)
    return times


def memory(pid: int) -> str:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:"):
                fields[parts[0][:-1]] = int(parts[1]) / 1024
    return f"RSS {fields['Rss']:.1f} MiB, PSS {fields['Pss']:.1f} MiB"


def main() -> None:
    from netkit import programs, sandbox

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=15)
    args = parser.parse_args()
    if not sandbox.in_sandbox():
        sys.exit(subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable] + sys.argv))
    if programs.find(BRIDGE) is None:
        sys.exit(programs.missing_message(BRIDGE))
    n = args.n
    rows: list[tuple[str, float]] = []
    # Measured as installed: with bytecode (pip writes it for a regular install; an editable
    # install under PYTHONDONTWRITEBYTECODE never gets any, and each process would compile).
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.dirname(programs.__file__)], capture_output=True)

    timed([NETKIT, "network", "create", "bench", "--subnet", "10.200.0.0/16"], OFF)
    timed([NETKIT, "container", "create", "warm", "--net", "bench"], OFF)  # its DNS server starts here
    cold_ls = [timed([NETKIT, "network", "ls"], OFF) for _ in range(n)]
    cold = [timed([NETKIT, "container", "create", f"cold{i}", "--net", "bench"], OFF) for i in range(n)]
    time.sleep(2)
    out = subprocess.run([NETKIT, "daemon", "start"], capture_output=True, text=True, check=True).stdout
    status = json.loads(subprocess.run([NETKIT, "daemon", "status", "--json"], capture_output=True, text=True).stdout)
    ref_conf = {"cniVersion": "1.0.0", "name": "ref", "type": "bridge", "bridge": "cni0", "isGateway": True,
                "ipMasq": True, "ipam": {"type": "host-local", "subnet": "10.210.0.0/16",
                                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/netkit/cni-ipam"}}
    nk_conf = {"cniVersion": "1.0.0", "name": "nkcni", "type": "netkit-cni", "bridge": "nk-cni0",
               "subnet": "10.220.0.0/16"}
    # One attachment each first: the bridges (and netkit's DNS server) exist before timing.
    cni_round(BRIDGE, ref_conf, "refw", 1)
    warm_ls, warm, ref_beside = [], [], []
    for i in range(n):  # a bridge plugin ADD after each create: the two see the same load
        warm_ls.append(timed([NETKIT, "network", "ls"]))
        warm.append(timed([NETKIT, "container", "create", f"hot{i}", "--net", "bench"]))
        sh(f"ip netns add refc{i}")
        ref_beside.append(timed([BRIDGE], cni_env("ADD", f"refc{i}", f"/run/netns/refc{i}"), json.dumps(ref_conf)))
    served = json.loads(subprocess.run([NETKIT, "daemon", "status", "--json"], capture_output=True,
                                       text=True).stdout)["served"]
    if served < 2 * n:
        sys.exit(f"bench: the daemon served {served} of {2 * n} commands: {out}")
    time.sleep(2)
    cni_round(NETKIT_CNI, nk_conf, "nkw", 1)
    sh("ip netns add refkeep && ip netns add nkkeep")
    timed([BRIDGE], cni_env("ADD", "refkeep", "/run/netns/refkeep"), json.dumps(ref_conf))
    timed([NETKIT_CNI], cni_env("ADD", "nkkeep", "/run/netns/nkkeep"), json.dumps(nk_conf))
    # The reference and netkit-cni take turns: each pair of numbers sees the same load.
    (ref_add, ref_del), (nk_add, nk_del) = cni_rounds([(BRIDGE, ref_conf, "ref", None),
                                                       (NETKIT_CNI, nk_conf, "nk", None)], n)
    time.sleep(2)
    nk_cold_add, nk_cold_del = cni_round(NETKIT_CNI, nk_conf, "nkc", n, OFF)
    daemon_mem = memory(status["pid"])
    subprocess.run([NETKIT, "daemon", "stop"], capture_output=True, check=True)

    rows = [
        ("netkit network ls, no daemon", med(cold_ls)),
        ("netkit network ls, netkitd up", med(warm_ls)),
        ("netkit container create, no daemon", med(cold)),
        ("netkit container create, netkitd up", med(warm)),
        ("CNI bridge plugin ADD, beside the creates", med(ref_beside)),
        ("CNI bridge plugin ADD (reference)", med(ref_add)),
        ("netkit-cni ADD, netkitd up", med(nk_add)),
        ("netkit-cni ADD, no daemon", med(nk_cold_add)),
        ("CNI bridge plugin DEL (reference)", med(ref_del)),
        ("netkit-cni DEL, netkitd up", med(nk_del)),
        ("netkit-cni DEL, no daemon", med(nk_cold_del)),
    ]
    print(f"whole-process medians of {n} runs each, one run of this script:")
    for label, ms in rows:
        print(f"  {label:40s} {ms:7.1f} ms")
    v = dict(rows)
    print("ratios (targets of issue 14):")
    print(f"  container create with netkitd / bridge ADD   {v['netkit container create, netkitd up'] / v['CNI bridge plugin ADD, beside the creates']:.2f}x (<= 2)")
    print(f"  network ls with netkitd                      {v['netkit network ls, netkitd up']:.1f} ms (<= 50 ms)")
    print(f"  netkit-cni ADD / bridge ADD                  {v['netkit-cni ADD, netkitd up'] / v['CNI bridge plugin ADD (reference)']:.2f}x (<= 1.5)")
    print(f"  netkit-cni DEL / bridge DEL                  {v['netkit-cni DEL, netkitd up'] / v['CNI bridge plugin DEL (reference)']:.2f}x (<= 0.5)")
    print(f"netkitd memory after {served + 3 * n} requests: {daemon_mem}")


if __name__ == "__main__":
    main()
