"""Latency of netkit's embedded DNS server: 100 records, 1000 sequential UDP A queries from one
client on loopback (127.0.0.1, a free port); prints median and p99 in ms. Bounded and self-stopping."""

import json
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from dnslib import DNSRecord

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_RECORDS, N_QUERIES = 100, 1000


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        records = os.path.join(tmp, "bench.json")
        with open(records, "w") as f:
            names = {f"c{i}": [f"172.30.{i // 250}.{i % 250 + 2}"] for i in range(N_RECORDS)}
            json.dump({"records": names, "upstreams": []}, f)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r, w = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-m", "netkit.dns.server", "--listen", "127.0.0.1", "--port", str(port),
             "--records", records, "--ready-fd", str(w)],
            pass_fds=(w,), stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": ROOT},
        )
        os.close(w)
        try:
            if not (select.select([r], [], [], 10)[0] and os.read(r, 1) == b"R"):
                print("server did not start", file=sys.stderr)
                return 1
            queries = [DNSRecord.question(f"c{i % N_RECORDS}").pack() for i in range(N_QUERIES)]
            times = []
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.settimeout(2)
                c.connect(("127.0.0.1", port))
                for q in queries:
                    t0 = time.perf_counter()
                    c.send(q)
                    c.recv(4096)
                    times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            print(f"{N_QUERIES} sequential UDP queries, {N_RECORDS} records: "
                  f"median {statistics.median(times):.3f} ms, p99 {times[int(len(times) * 0.99) - 1]:.3f} ms, "
                  f"max {times[-1]:.3f} ms")
        finally:
            os.close(r)
            proc.terminate()
            proc.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
