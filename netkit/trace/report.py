"""Render a trace report (the dict from assemble.build_report) as text for the terminal (rich
colours when it is a TTY, plain otherwise; 100 columns by default, long lines wrapped) and as
JSON. The SVG picture is svg.py.
"""
from __future__ import annotations

import json

MAX_PACKETS_SHOWN = 40  # per flow in text; --json always has every packet
WIDTH = 100
NAME_W = 22


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False)


def endpoint(ip, port) -> str:
    return f"{ip}:{port}" if port is not None else str(ip)


def hop_l3(h: dict) -> str:
    """Addresses of one hop (ICMP: addresses only; its type/code/id are in the packet's info)."""
    if h["proto"] == "arp" or h["src"] is None:
        return h["info"]
    text = f"{endpoint(h['src'], h['sport'])} → {endpoint(h['dst'], h['dport'])}"
    if h["ttl"] is not None:
        text += f" ttl {h['ttl']}"
    return text


def _drop_text(pkt: dict) -> str | None:
    d = pkt.get("drop")
    if not d:
        return None
    return d["text"] if isinstance(d, dict) else str(d)


Line = list  # [(text, style)]


def text_lines(report: dict, brief: bool = False) -> list[Line]:
    """The report as lines of (text, style) segments; styles are rich style names or ''."""
    lines: list[Line] = []

    def line(*segs):
        lines.append([s if isinstance(s, tuple) else (s, "") for s in segs])

    cap = report["capture"]
    pts = report["points"]
    line(("netkit trace", "bold"), f" · {len(pts)} interfaces · {cap['frames']} frames · ",
         (f"{cap['lost']} lost by the tracer", "red" if cap["lost"] else "green"),
         f" · {cap['duration_s']:.3f} s (stopped by {cap['stopped_by']})")
    if cap["filter"]:
        line(f"filter: {cap['filter']}")
    line("seen: " + " · ".join(f"{p.get('name', p['point'])} {p['frames']}" +
                               (f" ({p['lost']} lost)" if p["lost"] else "") for p in pts))
    veths = [f"{p['name']} = {p['detail']}" for p in pts if p.get("detail")]
    if veths:
        line(("veths: ", "dim"), (" · ".join(veths), "dim"))
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
        for i, tun in enumerate(flow.get("tunnels", [])):
            line("  tunnel     " if i == 0 else "             ", (tun, "blue"))
        for note in flow.get("notes", []):
            line("  note       ", (note, "yellow"))
        for e in flow["conntrack"]:
            o, r = e["original"], e["reply"]
            line("  conntrack  ", (f"{e['host']}: " if e.get("host") else "", "bold"),
                 (f"{e['proto']} {endpoint(o['src'], o['sport'])} → {endpoint(o['dst'], o['dport'])}"
                                   f"  reply {endpoint(r['src'], r['sport'])} → {endpoint(r['dst'], r['dport'])}",
                                   "blue"),
                 f"  [{','.join(e['status'])}]" + (f" {e['state']}" if e["state"] else "")
                 + (f" timeout {e['timeout']}s" if e["timeout"] is not None else ""))
        if not flow["conntrack"] and flow["proto"] in ("tcp", "udp", "icmp") and not brief:
            line("  conntrack  ", ("no entry (the host's conntrack does not track this flow)", "dim"))
        dropped = [p for p in flow["packets"] if p.get("drop")]
        for pkt in dropped[:3] if brief else []:
            line("  ", ("✗ ", "bold red"), (f"#{pkt['n']} {_drop_text(pkt)}", "red"))
        shown = flow["packets"][:MAX_PACKETS_SHOWN]
        for pkt in shown:
            if brief:
                _brief_packet(line, pkt)
            else:
                _packet(line, pkt)
        if len(flow["packets"]) > len(shown):
            line(f"  … {len(flow['packets']) - len(shown)} more packets (see --json or --pcap)")
    line("")
    if report["drops"]:
        line((f"Drops: {len(report['drops'])}", "bold red"))
        for d in report["drops"]:
            line(f"  flow {d['flow']} #{d['packet']} {d['info']}: ", (d.get("text") or d["reason"], "red"))
            if d.get("setting"):
                line("    setting behind it: ", (d["setting"], "bold"))
    else:
        line(("Drops: none", "green"))
    if report["flows"]:
        line(("Paths:", "bold"))
        for flow in report["flows"]:
            line(f"  {flow['id']}. {flow['title']}: ", (flow["path"], "cyan"))
    return lines


def _packet(line, pkt: dict) -> None:
    line("")
    status = ""
    if pkt.get("drop"):
        status = "  REFUSED" if pkt["drop"]["reason"] == "refused" else "  DROPPED"
    line(f"  #{pkt['n']} ", (pkt["info"], "bold"), f"  ({pkt['direction']})", (status, "bold red"))
    prev = None
    for h in pkt["hops"]:
        t = f"{h['t_us'] / 1000:9.3f} ms"
        dt = f"+{h['dt_us']:.1f}µs" if prev is not None else ""
        style = "dim" if h.get("echo") else "green"
        line(f"  {t} {dt:>9}  ", (f"{h.get('name', h['point']):<{NAME_W}}", style), f" {h['direction']:<3}  ",
             hop_l3(h))
        if prev is None or (h["src_mac"], h["dst_mac"]) != (prev["src_mac"], prev["dst_mac"]):
            line(" " * 26, ("L2 ", "dim"), (f"{h['src_mac']} → {h['dst_mac']}", "dim"))
        o = h.get("outer")
        if o and (prev is None or prev.get("outer") != o):
            line(" " * 26, ("outer ", "blue"), (f"VXLAN VNI {o['vni']} · UDP {o['src']}:{o['sport']} → "
                                                f"{o['dst']}:{o['dport']} ttl {o['ttl']} · L2 {o['src_mac']} → "
                                                f"{o['dst_mac']} · {o['length']} bytes", "blue"))
        for change in h["changes"]:
            cstyle = "magenta" if change.startswith(("DNAT", "SNAT", "reverse")) else "yellow"
            if h.get("echo"):
                cstyle = "dim"
            line(" " * 26, "↳ ", (change, cstyle))
        prev = h
    text = _drop_text(pkt)
    if text:
        line(" " * 26, ("✗ " + text, "bold red"))
        d = pkt["drop"]
        if d.get("setting"):
            line(" " * 28, "setting behind it: ", (d["setting"], "bold"))
        for e in d.get("evidence", [])[:4]:
            line(" " * 28, ("evidence: " + e, "dim"))
    elif pkt["note"]:
        line(" " * 26, ("… " + pkt["note"], "dim"))


def _brief_packet(line, pkt: dict) -> None:
    """One line per hop; the packet's info only on its first line; addresses only when they change."""
    prev_l3 = None
    for i, h in enumerate(pkt["hops"]):
        head = f"  #{pkt['n']:<3} {pkt['info'][:28]:<28} " if i == 0 else " " * 35
        l3 = hop_l3(h)
        shown = l3 if l3 != prev_l3 else ""
        tags = ",".join(h["nat"] + ([f"VXLAN {h['outer']['vni']}"] if h.get("outer") else [])) \
            or ("echo" if h.get("echo") else "")
        line(head, (f"{h.get('name', h['point']):<{NAME_W}}", "dim" if h.get("echo") else "green"),
             f" {h['direction']:<3} ", (f"[{tags}] " if tags else "", "magenta"), shown)
        prev_l3 = l3
    if pkt.get("drop"):
        line(" " * 35, ("✗ " + pkt["drop"]["reason"] + (f" ({pkt['drop']['setting']})" if pkt["drop"].get("setting")
                                                          else ""), "bold red"))


def wrap(segs: Line, width: int = WIDTH) -> list[Line]:
    """Wrap one line of segments at spaces to `width` columns; continuation lines are indented
    under the first text after the line's own indent, plus two."""
    text = "".join(t for t, _ in segs)
    if len(text) <= width:
        return [segs]
    indent = len(text) - len(text.lstrip(" "))
    cont = " " * min(indent + 4, width // 2)
    words: list[tuple[str, str]] = []  # (word with its trailing spaces, style)
    for t, style in segs:
        i = 0
        while i < len(t):
            j = i
            while j < len(t) and t[j] != " ":
                j += 1
            while j < len(t) and t[j] == " ":
                j += 1
            words.append((t[i:j], style))
            i = j
    out: list[Line] = []
    cur: Line = []
    col = 0
    for word, style in words:
        if col + len(word.rstrip()) > width and col > len(cont):
            out.append(cur)
            cur, col = [(cont, "")], len(cont)
            word = word.lstrip(" ")
        while len(word.rstrip()) > width - col:  # a single word longer than the room left: cut it
            room = max(1, width - col)
            cur.append((word[:room], style))
            out.append(cur)
            cur, col = [(cont, "")], len(cont)
            word = word[room:]
        cur.append((word, style))
        col += len(word)
    if cur:
        out.append(cur)
    return out


def to_text(report: dict, brief: bool = False, width: int = WIDTH) -> str:
    out = []
    for segs in text_lines(report, brief):
        for part in wrap(segs, width):
            out.append("".join(t for t, _ in part).rstrip())
    return "\n".join(out)


def print_report(report: dict, file=None, brief: bool = False) -> None:
    """Rich colours on a terminal, plain text otherwise (pipes, files, tests)."""
    import sys

    out = file or sys.stdout
    if not out.isatty():
        out.write(to_text(report, brief) + "\n")
        out.flush()
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(file=out, highlight=False, soft_wrap=True)
    for segs in text_lines(report, brief):
        for part in wrap(segs):
            text = Text()
            for t, style in part:
                text.append(t, style=style or None)
            console.print(text)
