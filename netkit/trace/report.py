"""Render a trace report (the dict from correlate.build_report): text for the terminal (rich
colours when it is a TTY, plain otherwise), JSON, and an SVG sequence diagram with one lane
per namespace/interface, one arrow per hop and the NAT steps marked.
"""
from __future__ import annotations

import html
import json

MAX_PACKETS_SHOWN = 40  # per flow in text; --json always has every packet
MAX_SVG_PACKETS = 60


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False)


# ---- text -----------------------------------------------------------------------------------

def _hop_l3(h: dict) -> str:
    if h["proto"] == "arp":
        return h["info"]
    if h["src"] is None:
        return h["info"]
    from netkit.trace.correlate import endpoint

    text = f"{endpoint(h['src'], h['sport'])} → {endpoint(h['dst'], h['dport'])}"
    if h["ttl"] is not None:
        text += f"  ttl {h['ttl']}"
    return text


def text_lines(report: dict) -> list[list[tuple[str, str]]]:
    """The report as lines of (text, style) segments; styles are rich style names or ''."""
    lines: list[list[tuple[str, str]]] = []

    def line(*segs):
        lines.append([s if isinstance(s, tuple) else (s, "") for s in segs])

    cap = report["capture"]
    pts = report["points"]
    line(("netkit trace", "bold"), f" · {len(pts)} interfaces · {cap['frames']} frames · ",
         (f"{cap['lost']} lost by the tracer", "red" if cap["lost"] else "green"),
         f" · {cap['duration_s']:.3f} s (stopped by {cap['stopped_by']})")
    if cap["filter"]:
        line(f"filter: {cap['filter']}")
    line("seen: " + " · ".join(f"{p['point']} {p['frames']}" + (f" ({p['lost']} lost)" if p["lost"] else "")
                               for p in pts))
    for note in report.get("notes", []):
        line(("note: ", "yellow"), note)
    if not report["flows"]:
        line("")
        line(("no packets were seen on any traced interface", "yellow"))
    for flow in report["flows"]:
        line("")
        line((f"Flow {flow['id']}", "bold cyan"), "  ", (flow["title"], "bold"), f"   {flow['from']} → {flow['to']}")
        line("  path       ", (flow["path"], "cyan"))
        if flow.get("reply_path"):
            line("  reply      ", (flow["reply_path"], "cyan"))
        for i, nat in enumerate(flow["nat"]):
            line("  NAT        " if i == 0 else "             ", (nat, "magenta"))
        if flow["conntrack"]:
            for e in flow["conntrack"]:
                o, r = e["original"], e["reply"]
                from netkit.trace.correlate import endpoint

                line("  conntrack  ", (f"{e['proto']} {endpoint(o['src'], o['sport'])} → {endpoint(o['dst'], o['dport'])}"
                                       f"  reply {endpoint(r['src'], r['sport'])} → {endpoint(r['dst'], r['dport'])}", "blue"),
                     f"  [{','.join(e['status'])}]" + (f" {e['state']}" if e["state"] else "")
                     + (f" timeout {e['timeout']}s" if e["timeout"] is not None else ""))
        elif flow["proto"] in ("tcp", "udp", "icmp"):
            line("  conntrack  ", ("no entry (the host's conntrack does not track this flow)", "dim"))
        shown = flow["packets"][:MAX_PACKETS_SHOWN]
        for pkt in shown:
            line("")
            status = "" if pkt["delivered"] else "  DROPPED"
            line(f"  #{pkt['n']} ", (pkt["info"], "bold"), f"  ({pkt['direction']})", (status, "bold red"))
            prev = None
            for h in pkt["hops"]:
                l2 = ""
                if prev is None or (h["src_mac"], h["dst_mac"]) != (prev["src_mac"], prev["dst_mac"]) or h["proto"] == "arp":
                    l2 = f"{h['src_mac']} → {h['dst_mac']}"
                t = f"{h['t_us'] / 1000:10.3f} ms"
                dt = f"+{h['dt_us']:.1f}µs" if prev is not None else ""
                line(f"    {t} {dt:>10}  ", (f"{h['point']:<22}", "green"), f" {h['direction']:<3}  ",
                     (f"{l2:<37}", "dim"), f" {_hop_l3(h)}")
                for change in h["changes"]:
                    style = "magenta" if change.startswith(("DNAT", "SNAT", "reverse")) else "yellow"
                    line(" " * 30, "↳ ", (change, style))
                prev = h
            if pkt["drop"]:
                line(" " * 30, ("✗ " + pkt["drop"], "bold red"))
            elif pkt["note"]:
                line(" " * 30, ("… " + pkt["note"], "dim"))
        if len(flow["packets"]) > len(shown):
            line(f"  … {len(flow['packets']) - len(shown)} more packets (see --json or --pcap)")
    line("")
    if report["drops"]:
        line((f"Drops: {len(report['drops'])}", "bold red"))
        for d in report["drops"]:
            line(f"  flow {d['flow']} #{d['packet']} {d['info']}: ", (d["reason"], "red"))
    else:
        line(("Drops: none", "green"))
    if report["flows"]:
        line(("Paths:", "bold"))
        for flow in report["flows"]:
            line(f"  {flow['id']}. {flow['title']}: ", (flow["path"], "cyan"))
    return lines


def to_text(report: dict) -> str:
    return "\n".join("".join(t for t, _ in segs).rstrip() for segs in text_lines(report))


def print_report(report: dict, file=None) -> None:
    """Rich colours on a terminal, plain text otherwise (pipes, files, tests)."""
    import sys

    out = file or sys.stdout
    if not out.isatty():
        out.write(to_text(report) + "\n")
        out.flush()
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(file=out, highlight=False, soft_wrap=True)
    for segs in text_lines(report):
        text = Text()
        for t, style in segs:
            text.append(t, style=style or None)
        console.print(text)


# ---- SVG ------------------------------------------------------------------------------------

def to_svg(report: dict) -> str:
    """A sequence diagram: lanes left to right in the order packets first reach them."""
    lanes: list[str] = []
    for flow in report["flows"]:
        for pkt in flow["packets"]:
            for h in pkt["hops"]:
                if h["point"] not in lanes:
                    lanes.append(h["point"])
    # Lanes nothing reached still show (that is where a drop becomes visible), continuing the
    # direction the seen lanes run in: path order is outside → uplink → bridge → veth → container.
    canon = [p["point"] for p in report["points"]]
    unseen = [c for c in canon if c not in lanes]
    if len(lanes) > 1 and canon.index(lanes[0]) > canon.index(lanes[-1]):
        unseen.reverse()
    unseen.sort(key=lambda c: c.endswith(":lo"))
    lanes += unseen
    left, lane_w, top, row_h = 330, 170, 70, 24  # left: room for "#N TCP [FA] seq=... ack=..."
    x = {name: left + i * lane_w for i, name in enumerate(lanes)}
    rows = []  # (kind, payload)
    count = 0
    for flow in report["flows"]:
        rows.append(("flow", flow))
        for pkt in flow["packets"]:
            if count >= MAX_SVG_PACKETS:
                break
            count += 1
            rows.append(("packet", pkt))
            rows.extend(("hop", (pkt, i)) for i in range(1, len(pkt["hops"])))
            if len(pkt["hops"]) == 1 or pkt["drop"]:
                rows.append(("end", pkt))
    width = left + max(1, len(lanes)) * lane_w + 200
    height = top + (len(rows) + 2) * row_h
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker>'
           '<marker id="nat" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c0392b"/></marker></defs>',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">netkit trace: {report["capture"]["frames"]} frames '
           f'on {len(report["points"])} interfaces</text>']
    for name, lx in x.items():
        out.append(f'<line x1="{lx}" y1="{top - 10}" x2="{lx}" y2="{height - 10}" stroke="#bbb" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{lx}" y="{top - 18}" text-anchor="middle" font-weight="bold">{e(name)}</text>')
    y = top + row_h
    for kind, payload in rows:
        if kind == "flow":
            out.append(f'<text x="10" y="{y}" font-weight="bold" fill="#1a5276">Flow {payload["id"]}: '
                       f'{e(payload["title"])}</text>')
        elif kind == "packet":
            h0 = payload["hops"][0]
            out.append(f'<text x="20" y="{y}">#{payload["n"]} {e(payload["info"][:30])}</text>')
            out.append(f'<circle cx="{x[h0["point"]]}" cy="{y - 4}" r="4" fill="#333"/>')
        elif kind == "hop":
            pkt, i = payload
            hops = pkt["hops"]
            h = hops[i]
            src = h.get("from_point") or hops[i - 1]["point"]
            nat = bool(h["nat"])
            colour = "#c0392b" if nat else "#333"
            x1, x2 = x[src], x[h["point"]]
            if x1 == x2:
                out.append(f'<path d="M{x1},{y - 12} C{x1 + 40},{y - 12} {x1 + 40},{y} {x1 + 4},{y}" fill="none" '
                           f'stroke="{colour}" marker-end="url(#{"nat" if nat else "arrow"})"/>')
            else:
                out.append(f'<line x1="{x1}" y1="{y - 12}" x2="{x2}" y2="{y}" stroke="{colour}" '
                           f'stroke-width="{2 if nat else 1}" marker-end="url(#{"nat" if nat else "arrow"})"/>')
            label = "; ".join(h["changes"]) if h["changes"] else f'+{h["dt_us"]:.1f}µs'
            anchor_x = max(x1, x2) + 8
            out.append(f'<text x="{anchor_x}" y="{y - 2}" fill="{colour}" font-size="11">{e(label[:90])}</text>')
        elif kind == "end":
            last = payload["hops"][-1]
            if payload["drop"]:
                out.append(f'<text x="{x[last["point"]] + 8}" y="{y - 2}" fill="#c0392b" font-weight="bold">'
                           f'✗ {e(payload["drop"][:90])}</text>')
        y += row_h
    if not report["flows"]:
        out.append(f'<text x="{left}" y="{y}" fill="#7f8c8d">no packets were seen on any traced interface</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
