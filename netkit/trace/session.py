"""One trace from start to files: resolve the path, snapshot the kernel's counters, capture,
snapshot again, then (in this order, so that an interrupted trace still leaves its evidence)
write the pcaps, read the kernel's facts, build the report with its drop causes, and write the
SVG. Shared by `netkit trace capture` and the demos.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from netkit.trace.capture import Capture, build_filter
from netkit.trace.model import Result, Topology


@dataclass
class Outputs:
    pcap_dir: str | None = None
    svg: str | None = None
    json: bool = False
    brief: bool = False


@dataclass
class Traced:
    """A finished capture with the kernel counters taken around it."""

    result: Result
    topo: Topology
    before: object = None  # evidence.Snapshot
    after: object = None


def filter_for(topo: Topology, proto: str | None, port: int | None, extra: str | None = None) -> str:
    expr = build_filter(proto, topo.ports if port else None, extra)
    if topo.hosts:
        from netkit.trace.capture import tunnel_filter

        # The underlay carries the store's traffic too: only VXLAN there, filtered on what it carries.
        topo.tunnel_filter = tunnel_filter(proto, topo.ports if port else None)
        if extra:
            topo.notes.append(f"--filter '{extra}' applies to the containers' and hosts' own interfaces; "
                              "on the uplinks only --proto and --port select what the VXLAN frames carry")
    return expr


def snapshot(topo: Topology):
    from netkit.trace import evidence

    return evidence.Snapshot(topo)


def conclude(traced: Traced, world, outputs: Outputs) -> dict:
    """Files first (cheap, no Scapy), then the report."""
    from netkit.kernel import tracefacts
    from netkit.trace import assemble, path
    from netkit.trace import evidence as evidence_mod
    from netkit.trace import pcap as pcap_mod
    from netkit.trace import svg as svg_mod

    result, topo = traced.result, traced.topo
    files = pcap_mod.write(result, outputs.pcap_dir) if outputs.pcap_dir else []
    path.enrich(topo, world)
    ev = evidence_mod.evidence(topo, traced.before, traced.after)
    report = assemble.build_report(result, topo, _conntrack(topo), ev)
    if outputs.pcap_dir:  # again, now with each packet's hop, direction and NAT as comments
        files.append(pcap_mod.write_pcapng(result, outputs.pcap_dir, report))
    if files:
        report["files"] = files
    if outputs.svg:
        os.makedirs(os.path.dirname(os.path.abspath(outputs.svg)), exist_ok=True)
        with open(outputs.svg, "w") as fh:
            fh.write(svg_mod.to_svg(report, brief=outputs.brief))
        report.setdefault("files", []).append(outputs.svg)
    return report


def _conntrack(topo: Topology) -> list[dict]:
    """This host's conntrack entries; across hosts, every traced host's, each tagged with it."""
    from netkit.kernel import tracefacts

    if not topo.hosts:
        return tracefacts.conntrack()
    paths = {p.netns: p.path for p in topo.points if p.netns in topo.hosts}
    out = []
    for host in sorted(paths):
        out += [dict(e, host=host) for e in tracefacts.conntrack(paths[host])]
    return out


def emit(report: dict, outputs: Outputs) -> None:
    from netkit.trace import report as report_mod

    if outputs.json:
        sys.stdout.write(report_mod.to_json(report) + "\n")
    else:
        report_mod.print_report(report, brief=outputs.brief)
        for f in report.get("files", []):
            print(f"wrote {f}")
    sys.stdout.flush()


def capture(topo: Topology, bpf: str, duration: float | None, count: int | None, on_live=None) -> Traced:
    """Capture in the calling (main) thread; Ctrl-C and SIGTERM end it like a limit does."""
    cap = Capture(topo.points, bpf, tunnel_bpf=topo.tunnel_filter)
    cap.open()
    before = snapshot(topo)
    if on_live:
        on_live(cap)
    try:
        result = cap.run(duration=duration, count=count, handle_signals=True)
    finally:
        cap.close()
    return Traced(result, topo, before, snapshot(topo))
