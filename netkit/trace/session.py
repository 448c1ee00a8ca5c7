"""One trace from start to files: resolve the path, capture, then (in this order, so that an
interrupted trace still leaves its evidence) write the pcaps, read the kernel's facts, correlate,
and write the SVG. Shared by `netkit trace capture` and the demos.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from netkit.trace.capture import Capture, Result, build_filter
from netkit.trace.path import Topology


@dataclass
class Outputs:
    pcap_dir: str | None = None
    svg: str | None = None
    json: bool = False


def filter_for(topo: Topology, proto: str | None, port: int | None, extra: str | None = None) -> str:
    return build_filter(proto, topo.ports if port else None, extra)


def conclude(result: Result, topo: Topology, store, outputs: Outputs) -> dict:
    """Files first (cheap, no Scapy), then the report."""
    from netkit.trace import correlate, path
    from netkit.trace import pcap as pcap_mod
    from netkit.trace import report as report_mod

    files = pcap_mod.write(result, outputs.pcap_dir) if outputs.pcap_dir else []
    path.enrich(topo, store)
    report = correlate.build_report(result, topo, correlate.read_conntrack())
    if files:
        report["files"] = files
    if outputs.svg:
        os.makedirs(os.path.dirname(os.path.abspath(outputs.svg)), exist_ok=True)
        with open(outputs.svg, "w") as fh:
            fh.write(report_mod.to_svg(report))
        report.setdefault("files", []).append(outputs.svg)
    return report


def emit(report: dict, outputs: Outputs) -> None:
    from netkit.trace import report as report_mod

    if outputs.json:
        sys.stdout.write(report_mod.to_json(report) + "\n")
    else:
        report_mod.print_report(report)
        for f in report.get("files", []):
            print(f"wrote {f}")
    sys.stdout.flush()


def capture(topo: Topology, bpf: str, duration: float | None, count: int | None,
            on_live=None) -> Result:
    """Capture in the calling (main) thread; Ctrl-C and SIGTERM end it like a limit does."""
    cap = Capture(topo.points, bpf)
    cap.open()
    if on_live:
        on_live(cap)
    try:
        return cap.run(duration=duration, count=count, handle_signals=True)
    finally:
        cap.close()
