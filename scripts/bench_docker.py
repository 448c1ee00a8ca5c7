#!/usr/bin/env python3
"""Benchmark (issue 14): `docker network connect` + `disconnect` with netkit's remote driver
against Docker's own bridge driver, same dockerd, same container, same run, interleaved; and, as
the protocol's floor, a remote driver that only makes a veth (scripts/floor_driver.py).

A real dockerd (Debian's docker.io) in a sandbox (scripts/dockerbox.py), netkitd serving the
driver on /run/docker/plugins/netkit.sock, one running container `bench` on Docker's default
bridge network; each round connects it to the netkit network then disconnects it, then the same
with a bridge-driver network and with a floor-driver network. Two measures, medians (and p90) of
N rounds each:
- `docker network connect/disconnect` as a user types them (whole docker CLI process);
- the same request straight to dockerd's API (POST /networks/ID/connect on its unix socket):
  without the CLI's start-up, closer to what the driver itself costs;
and, to say where netkit's time goes, the driver's Join and Leave called in-process, with the
engine attach in the Join and, inside the attach, the veth, the netns name, the rules sync
(reconcile: the container's rules) and the adapter's read-back (describe).

    .venv/bin/python scripts/bench_docker.py [--n 30]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


FLOOR_SOCKET = "/run/docker/plugins/floor.sock"  # driver name "floor"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def api(path: str, body: dict) -> None:
    """One POST to dockerd's API on its unix socket; raises unless 2xx."""
    import dockerbox

    data = json.dumps(body).encode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(dockerbox.SOCKET)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    if not 200 <= status < 300:
        raise RuntimeError(f"POST {path}: {reply.decode(errors='replace')}")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    from netkit import sandbox

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()
    if not sandbox.in_sandbox():
        return subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable] + sys.argv)

    import dockerbox

    box = dockerbox.DockerBox()
    box.start()
    try:
        subprocess.run([sys.executable, "-m", "netkit", "daemon", "start", "--docker-socket",
                        dockerbox.PLUGIN_SOCKET], check=True, capture_output=True)
        floor = subprocess.Popen([sys.executable, os.path.join(HERE, "floor_driver.py"), FLOOR_SOCKET, "floorbr0"])
        deadline = time.monotonic() + 10
        while not os.path.exists(FLOOR_SOCKET) and time.monotonic() < deadline:
            time.sleep(0.02)
        image = box.import_busybox()
        ids = {driver: box.docker("network", "create", "-d", driver, f"bench-{driver}").stdout.strip()
               for driver in ("netkit", "bridge", "floor")}
        box.docker("run", "-d", "--name", "bench", image, "sleep", "3600")
        cli = {d: {"connect": [], "disconnect": []} for d in ids}
        raw = {d: {"connect": [], "disconnect": []} for d in ids}
        for _ in range(2):  # warm-up: first plugin connection, first netns pin, page cache
            for driver in ids:
                box.docker("network", "connect", f"bench-{driver}", "bench")
                box.docker("network", "disconnect", f"bench-{driver}", "bench")
        for _ in range(args.n):
            for driver, net_id in ids.items():
                cli[driver]["connect"].append(timed(lambda: box.docker("network", "connect", f"bench-{driver}", "bench")))
                cli[driver]["disconnect"].append(timed(lambda: box.docker("network", "disconnect", f"bench-{driver}", "bench")))
                raw[driver]["connect"].append(timed(lambda: api(f"/networks/{net_id}/connect", {"Container": "bench"})))
                raw[driver]["disconnect"].append(timed(lambda: api(f"/networks/{net_id}/disconnect", {"Container": "bench"})))
        box.docker("rm", "-f", "bench")
        box.docker("network", "rm", *(f"bench-{d}" for d in ids))
    finally:
        box.stop()
        subprocess.run([sys.executable, "-m", "netkit", "daemon", "stop"], capture_output=True)
        if "floor" in locals():
            floor.kill()
            floor.wait()

    parts = in_process_breakdown(args.n)
    version = subprocess.run([dockerbox.DOCKERD, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}; N={args.n} rounds, interleaved; milliseconds, median (p90)")
    for label, table in (("docker CLI", cli), ("dockerd API", raw)):
        for op in ("connect", "disconnect"):
            drivers = ids if op == "connect" else ("netkit", "bridge")  # the floor's Leave runs `ip`
            cells = [f"{d} {statistics.median(table[d][op]):6.1f} ({pct(table[d][op], 0.9):6.1f})" for d in drivers]
            ratio = statistics.median(table["netkit"][op]) / statistics.median(table["bridge"][op])
            floor_ratio = (f"   floor/bridge {statistics.median(table['floor'][op]) / statistics.median(table['bridge'][op]):.2f}x"
                           if op == "connect" else "")
            print(f"{label:11s} network {op:10s}: " + "   ".join(cells) + f"   netkit/bridge {ratio:.2f}x" + floor_ratio)
    print("netkit driver in-process (no dockerd, recorded bodies, a netns standing in for Docker's), median ms:")
    print("  " + "   ".join(f"{k} {statistics.median(v):.1f}" for k, v in parts.items()))
    return 0


def in_process_breakdown(n: int) -> dict[str, list[float]]:
    """Where a Join and a Leave spend their time: the handlers called in this process, with the
    engine adapter and the hand-over steps timed one by one."""
    from netkit import adapter
    from netkit.dockerplugin import handlers
    from netkit.engine import reconcile
    from netkit.kernel import links

    parts: dict[str, list[float]] = {}

    def timing(module, name: str, label: str) -> None:
        original = getattr(module, name)

        def timed_call(*a, **k):
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                parts.setdefault(label, []).append((time.perf_counter() - t0) * 1000)
        setattr(module, name, timed_call)

    for module, name, label in ((adapter, "attach", "engine attach"), (links, "endpoint_add", "veth"),
                                (links, "netns_attach", "netns name"), (reconcile, "sync", "rules sync"),
                                (adapter, "_describe", "describe")):
        timing(module, name, label)
    net_id = "b" * 64
    post = lambda path, body: handlers.handle(path, json.dumps(body).encode())  # noqa: E731
    post("/NetworkDriver.CreateNetwork", {"NetworkID": net_id, "Options": {}, "IPv6Data": [],
                                          "IPv4Data": [{"Pool": "10.211.0.0/16", "Gateway": "10.211.0.1/16"}]})
    subprocess.run(["ip", "netns", "add", "docker-standin"], check=True)
    for i in range(n + 2):
        ids = {"NetworkID": net_id, "EndpointID": f"{i:064x}"}
        post("/NetworkDriver.CreateEndpoint", {**ids, "Interface": {"Address": f"10.211.0.{i + 2}/16"}})
        join = timed(lambda: post("/NetworkDriver.Join", {**ids, "SandboxKey": "/run/netns/docker-standin"}))
        leave = timed(lambda: post("/NetworkDriver.Leave", ids))
        post("/NetworkDriver.DeleteEndpoint", ids)
        if i >= 2:  # warm-up rounds out
            parts.setdefault("Join", []).append(join)
            parts.setdefault("Leave", []).append(leave)
    post("/NetworkDriver.DeleteNetwork", {"NetworkID": net_id})
    return {k: v[2:] if k not in ("Join", "Leave") else v for k, v in parts.items()}


if __name__ == "__main__":
    sys.exit(main())
