"""`netkit trace ...` and `netkit demo`: the packet tracer."""
from __future__ import annotations

import sys
from typing import List, Optional

import typer

from netkit.cli.app import JSON_OPT, app, group

trace_app = group("trace", "Packet tracer: every hop of a flow across namespaces, NAT and bridging made visible.")

PCAP_OPT = typer.Option(None, "--pcap", help="Write one pcap per interface plus merged.pcap(ng) into this folder.")
SVG_OPT = typer.Option(None, "--svg", help="Write a sequence diagram (SVG) to this file.")


BRIEF_OPT = typer.Option(False, "--brief", help="Compact report: one line per packet per hop, a flow summary.")


def _outputs(pcap: Optional[str], json: bool, svg: Optional[str], brief: bool = False):
    from netkit.trace.session import Outputs

    return Outputs(pcap_dir=pcap, svg=svg, json=json, brief=brief)


@trace_app.command("capture")
def capture(
    containers: List[str] = typer.Argument(None, help="Containers whose path to trace (default: all). In a "
                                           "multi-host sandbox also a container of another host: both hosts' "
                                           "hops and the VXLAN between them are traced."),
    port: Optional[int] = typer.Option(None, "--port", help="Only this port (published ports follow their mapping)."),
    proto: Optional[str] = typer.Option(None, "--proto", help="tcp | udp | icmp | arp"),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop after S seconds."),
    count: Optional[int] = typer.Option(None, "--count", help="Stop after N packets (a packet seen on many hops counts once)."),
    bpf: Optional[str] = typer.Option(None, "--filter", help="Extra tcpdump-style filter, ANDed with the others."),
    pcap: Optional[str] = PCAP_OPT,
    json: bool = JSON_OPT,
    svg: Optional[str] = SVG_OPT,
    brief: bool = BRIEF_OPT,
):
    """Capture on every interface of the containers' paths at once until the limit or Ctrl-C, then report."""
    from netkit.errors import UserError
    from netkit.trace import path, session
    from netkit.trace.world import World

    if duration is not None and count is not None:
        raise UserError("give --duration or --count, not both")
    if duration is not None and duration <= 0:
        raise UserError(f"invalid --duration {duration}: use a positive number of seconds")
    if count is not None and count <= 0:
        raise UserError(f"invalid --count {count}: use a positive number")
    world = World()
    topo = path.resolve(world, list(containers or []), port=port, proto=proto)
    bpf_expr = session.filter_for(topo, proto, port, bpf)

    def live(cap) -> None:
        limit = f"for {duration:g} s" if duration else f"until {count} packets" if count else "until Ctrl-C"
        print(f"netkit trace: capturing on {len(topo.points)} interfaces ({', '.join(p.label for p in topo.points)}) "
              f"{limit}", file=sys.stderr, flush=True)

    traced = session.capture(topo, bpf_expr, duration, count, on_live=live)
    outputs = _outputs(pcap, json, svg, brief)
    report = session.conclude(traced, world, outputs)
    world.close()
    session.emit(report, outputs)
    if traced.result.stopped_by == "interrupt":
        sys.exit(130)


def _demo(mode: str, pcap: Optional[str], json: bool, svg: Optional[str], brief: bool = False) -> None:
    from netkit.trace import demos, session

    demos.check_mode(mode)
    demos.ensure_sandbox()
    outputs = _outputs(pcap, json, svg, brief)
    report = demos.run(mode, outputs)
    session.emit(report, outputs)


@trace_app.command("demo")
def demo(
    mode: str = typer.Argument(..., help="bridge | publish | outbound | host | container | none"),
    pcap: Optional[str] = PCAP_OPT,
    json: bool = JSON_OPT,
    svg: Optional[str] = SVG_OPT,
    brief: bool = BRIEF_OPT,
):
    """Build a scenario in a sandbox, run real traffic, trace it, report, clean up."""
    _demo(mode, pcap, json, svg, brief)


@app.command("demo")
def main_demo(pcap: Optional[str] = PCAP_OPT, json: bool = JSON_OPT, svg: Optional[str] = SVG_OPT,
              brief: bool = BRIEF_OPT):
    """The main job end to end: publish a port and trace a request from outside to the container and back."""
    _demo("publish", pcap, json, svg, brief)
