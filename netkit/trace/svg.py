"""The trace as a picture (SVG): a sequence diagram whose lanes (one per interface) sit in boxes,
one box per network namespace (the outside host, the host, each container), time running down.
Each packet is a row of arrows from hop to hop; red arrows mark where NAT rewrote addresses, and
the addresses are written out where they change; grey dashed arrows are hairpin echoes. Notes
(bridge forwarding, NAT, drops) sit in a column on the right, numbered: a note repeated by later
packets is shown once and then referred to by its number. A legend explains the marks.

`brief`: one row per packet (its hops as dots on one line) and a summary per flow.

The layout is computed first as boxes and text boxes with sizes from a fixed-width font metric
(DejaVu Sans Mono: 0.6 em per character, counted conservatively), so that text never leaves its
box; layout() returns that model, and tests check every text box against its container.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

FONT = "DejaVu Sans Mono, monospace"
SIZE = 12
SMALL = 10.5
CHAR_EM = 0.62  # DejaVu Sans Mono advances 0.602 em; a little more for safety
ROW = 18
PAD = 8
LANE_MIN = 96
LEFT_CHARS = 34  # packet labels in the left column
NOTE_CHARS = 64  # notes column width in characters
MAX_PACKETS = 60
NAT_TAGS = ("DNAT", "SNAT", "MASQUERADE", "un-SNAT", "un-DNAT")
TUNNEL_NOTES = ("encapsulated by", "decapsulated by", "crossed the underlay")  # narrate._tunnel_change

COLOURS = {"arrow": "#34495e", "nat": "#c0392b", "tunnel": "#2471a3", "echo": "#aab7b8", "drop": "#c0392b", "flow": "#1a5276",
           "box": "#f4f6f7", "box_line": "#85929e", "lane": "#bfc9ca", "note": "#7d6608", "dim": "#7f8c8d"}
NS_FILL = {"outside": "#fdf2e9", "host": "#eaf2f8"}


def text_width(text: str, size: float = SIZE) -> float:
    """Width of text in the fixed-width font; non-ASCII (arrows, ✗) counted as two cells."""
    cells = sum(1 if ord(c) < 128 else 2 for c in text)
    return cells * size * CHAR_EM


def fit(text: str, width: float, size: float = SIZE) -> str:
    """Abbreviate text (with …) so that it fits `width`."""
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def wrap(text: str, width: float, size: float = SIZE) -> list[str]:
    """Wrap at spaces to fit `width`; a word longer than a line is cut."""
    lines, cur = [], ""
    for word in text.split(" "):
        cand = f"{cur} {word}" if cur else word
        if text_width(cand, size) <= width:
            cur = cand
            continue
        if cur:
            lines.append(cur)
        while text_width(word, size) > width:
            n = max(1, int(width // (size * CHAR_EM * 2)))
            cut = word
            while text_width(cut, size) > width and len(cut) > n:
                cut = cut[:-1]
            lines.append(cut)
            word = word[len(cut):]
        cur = word
    if cur:
        lines.append(cur)
    return lines or [""]


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float
    name: str = ""

    def contains(self, b: tuple) -> bool:
        x0, y0, x1, y1 = b
        return self.x - 0.5 <= x0 and x1 <= self.x + self.w + 0.5 and self.y - 0.5 <= y0 and y1 <= self.y + self.h + 0.5


@dataclass
class Text:
    x: float
    y: float  # baseline
    text: str
    box: str  # name of the Box it must stay inside
    size: float = SIZE
    anchor: str = "start"
    fill: str = "#222"
    weight: str = "normal"

    @property
    def bbox(self) -> tuple:
        w = text_width(self.text, self.size)
        x0 = self.x - (w / 2 if self.anchor == "middle" else w if self.anchor == "end" else 0)
        return (x0, self.y - self.size * 0.85, x0 + w, self.y + self.size * 0.25)


@dataclass
class Layout:
    width: float = 0
    height: float = 0
    boxes: dict = field(default_factory=dict)  # name -> Box
    texts: list = field(default_factory=list)
    shapes: list = field(default_factory=list)  # raw SVG elements (lines, arrows, dots)

    def text(self, *args, **kwargs) -> Text:
        t = Text(*args, **kwargs)
        self.texts.append(t)
        return t

    def overflows(self) -> list:
        """Texts outside their box (or the canvas): what tests assert is empty."""
        canvas = Box(0, 0, self.width, self.height)
        return [t for t in self.texts if not (self.boxes[t.box].contains(t.bbox) and canvas.contains(t.bbox))]


# ---- lanes and namespace boxes --------------------------------------------------------------

def _ns_title(ns: str, report: dict) -> str:
    if ns == "outside":
        return "outside host"
    if ns == "host":
        owners = report.get("containers", {}).get("host")
        return "host" + (f" (and {', '.join(owners)})" if owners else "")
    host = report.get("hosts", {}).get(ns)
    if host is not None:  # a trace across hosts: hK's own netns
        return f"host {ns}" + (f" ({host['address']})" if host.get("address") else "")
    names = report.get("containers", {}).get(ns) or [ns]
    return "container " + ", ".join(names)


def _lanes(report: dict) -> list[dict]:
    """Lanes in path order; each {point, ns, title, detail}: only interfaces that saw a packet
    (a drop shows as ✗ on the last interface that saw it)."""
    seen = {h["point"] for f in report["flows"] for p in f["packets"] for h in p["hops"]}
    out = []
    for p in report["points"]:
        if report["flows"] and p["point"] not in seen:
            continue  # an empty lane teaches nothing
        name = p.get("name", p["point"]).split(":", 1)[1]
        role = {"bridge": "bridge", "uplink": "uplink", "veth": "veth", "lo": "loopback", "vxlan": "VXLAN"}.get(p["role"], "")
        title = name if role in ("", "veth", "uplink") or name == role else f"{name} ({role})"
        out.append({"point": p["point"], "ns": p["netns"], "title": title, "detail": p.get("detail") or "",
                    "host": p["netns"] in report.get("hosts", {})})
    # one box per netns: its lanes side by side, boxes in the order their netns first appears
    first = {}
    for i, ln in enumerate(out):
        first.setdefault(ln["ns"], i)
    return sorted(out, key=lambda ln: first[ln["ns"]])


# ---- rows -----------------------------------------------------------------------------------

class _Notes:
    """Numbered notes: a repeated text gets the number it had the first time."""

    def __init__(self):
        self.numbers: dict[str, int] = {}

    def ref(self, text: str) -> tuple[int, bool]:
        if text in self.numbers:
            return self.numbers[text], False
        self.numbers[text] = len(self.numbers) + 1
        return self.numbers[text], True


def _addr(h: dict) -> str:
    if h["src"] is None:
        return ""
    ep = (lambda ip, port: f"{ip}:{port}" if port is not None else str(ip))
    return f"{ep(h['src'], h['sport'])} → {ep(h['dst'], h['dport'])}"


def layout(report: dict, brief: bool = False) -> Layout:
    lay = Layout()
    lanes = _lanes(report)
    if not lanes:
        lanes = [{"point": p["point"], "ns": p["netns"], "title": p["point"], "detail": ""} for p in report["points"]]
    # lane widths from their titles
    for ln in lanes:
        ln["w"] = max(LANE_MIN, text_width(ln["title"], SIZE) + 2 * PAD, text_width(ln["detail"], SMALL) + 2 * PAD)
    left_w = LEFT_CHARS * SIZE * CHAR_EM + 2 * PAD
    note_w = NOTE_CHARS * SMALL * CHAR_EM + 2 * PAD
    # namespace groups, in lane order
    groups: list[list[dict]] = []
    for ln in lanes:
        if groups and groups[-1][0]["ns"] == ln["ns"]:
            groups[-1].append(ln)
        else:
            groups.append([ln])
    gap = 14
    x = left_w + gap
    for g in groups:
        title = _ns_title(g[0]["ns"], report)
        inner = sum(ln["w"] for ln in g)
        need = text_width(title, SIZE) + 2 * PAD
        extra = max(0.0, need - inner)
        for ln in g:
            ln["w"] += extra / len(g)
        gx = x
        for ln in g:
            ln["x"] = x + ln["w"] / 2
            x += ln["w"]
        g[0]["box"] = (gx, x - gx, title)
        x += gap
    notes_x = x + 4
    width = notes_x + note_w + PAD
    top = 44
    head_h = 46
    lane_x = {ln["point"]: ln["x"] for ln in lanes}

    # rows first (their height decides the boxes' height)
    rows: list[tuple] = []  # (y, kind, payload)
    notes = _Notes()
    y = top + head_h + ROW
    count = 0
    elements: list = []  # deferred drawing: (kind, data)

    def note_lines(text: str, colour: str, y0: float, prefix: str = "") -> float:
        lines = wrap(prefix + text, note_w - 2 * PAD, SMALL)
        for i, ln in enumerate(lines):
            lay.text(notes_x + PAD, y0 + i * (ROW - 4), ln, "notes", SMALL, fill=colour)
        return (len(lines) - 1) * (ROW - 4)

    for flow in report["flows"]:
        elements.append(("flow", (y, flow)))
        title = f"Flow {flow['id']}: {flow['title']}  ({flow['from']} → {flow['to']})"
        lay.text(PAD, y, fit(title, width - 2 * PAD, SIZE), "canvas", SIZE, fill=COLOURS["flow"], weight="bold")
        y += ROW
        if brief:
            for label, value, colour in [("path", flow["path"], COLOURS["arrow"]),
                                         ("reply", flow.get("reply_path") or "", COLOURS["arrow"])] + \
                    [("NAT", n, COLOURS["nat"]) for n in flow["nat"]]:
                if value:
                    for ln in wrap(f"{label}: {value}", width - 4 * PAD, SMALL):
                        lay.text(2 * PAD, y, ln, "canvas", SMALL, fill=colour)
                        y += ROW - 4
            y += 4
        for pkt in flow["packets"]:
            if count >= MAX_PACKETS:
                break
            count += 1
            hops = pkt["hops"]
            label_lines = wrap(f"#{pkt['n']} {pkt['info']}", left_w - 2 * PAD, SIZE)[:3]
            for i, ln in enumerate(label_lines if not brief else label_lines[:1]):
                lay.text(PAD, y + i * (ROW - 3), fit(ln, left_w - 2 * PAD, SIZE), "left", SIZE, weight="bold")
            if brief:
                xs = [lane_x[h["point"]] for h in hops if h["point"] in lane_x]
                elements.append(("brief", (y, hops, xs, pkt)))
                tags = [t for h in hops for t in h["nat"]]
                extra = ""
                if tags:
                    extra = "NAT: " + ", ".join(dict.fromkeys(tags))
                if pkt.get("drop"):
                    d = pkt["drop"]
                    extra = ("✗ " + d["reason"] + (f" ({d['setting']})" if d.get("setting") else ""))
                if extra:
                    lay.text(notes_x + PAD, y, fit(extra, note_w - 2 * PAD, SMALL), "notes", SMALL,
                             fill=COLOURS["nat"] if not pkt.get("drop") else COLOURS["drop"])
                y += ROW
                continue
            # the packet's first sighting: a dot, its addresses under the label
            addr = _addr(hops[0])
            label_bottom = y + (len(label_lines) - 1) * (ROW - 3)
            if addr:
                label_bottom += ROW - 4
                lay.text(PAD + 10, label_bottom, fit(addr, left_w - 2 * PAD - 10, SMALL), "left", SMALL,
                         fill=COLOURS["dim"])
            elements.append(("dot", (y, hops[0])))
            prev_addr = addr
            y_row = y + ROW
            for i in range(1, len(hops)):
                h = hops[i]
                src = h.get("from_point") or hops[i - 1]["point"]
                kind = "echo" if h.get("echo") else "nat" if h["nat"] else "tunnel" if h.get("outer") else "arrow"
                elements.append(("hop", (y_row, src, h["point"], kind)))
                texts, repeats = [], []
                a = _addr(h)
                if a and a != prev_addr:
                    texts.append((f"now {a}", COLOURS["nat"]))
                prev_addr = a or prev_addr
                for c in h["changes"]:
                    num, new = notes.ref(c)
                    colour = COLOURS["nat"] if any(c.startswith(t) or t in c.split()[0] for t in NAT_TAGS) or \
                        c.startswith("reverse") else COLOURS["echo"] if h.get("echo") else \
                        COLOURS["tunnel"] if c.startswith(TUNNEL_NOTES) else COLOURS["note"]
                    if new:
                        texts.append((f"[{num}] {c}", colour))
                    else:
                        repeats.append(f"[{num}]")
                if repeats:  # notes seen before: their numbers only, on one line
                    if texts and texts[-1][0].startswith("now "):
                        texts[-1] = (texts[-1][0] + "  " + " ".join(repeats), texts[-1][1])
                    else:
                        texts.append((" ".join(repeats) + " as above", COLOURS["dim"]))
                yy = y_row - 2
                for t, colour in texts:
                    yy += note_lines(t, colour, yy) + (ROW - 4)
                y_row = max(y_row + ROW, yy + 4)
            y_row = max(y_row, label_bottom + ROW)
            y = y_row
            if pkt.get("drop"):
                d = pkt["drop"]
                last = hops[-1]["point"]
                elements.append(("drop", (y - ROW, last)))
                text = f"✗ {d['text']}" + (f"  [setting: {d['setting']}]" if d.get("setting") else "")
                y += note_lines(text, COLOURS["drop"], y) + ROW
            y += 6
    if not report["flows"]:
        lay.text(PAD, y, "no packets were seen on any traced interface", "canvas", SIZE, fill=COLOURS["dim"])
        y += ROW
    body_bottom = y + 4
    # legend
    legend_y = body_bottom + 22
    legend = [("arrow", "frame seen on the next hop"), ("nat", "NAT rewrote addresses (red)"),
              ("echo", "hairpin echo (grey, dashed)"), ("drop", "packet dropped here"),
              ("dot", "first sighting")]
    if any(h.get("outer") for f in report["flows"] for p in f["packets"] for h in p["hops"]):
        legend.insert(2, ("tunnel", "VXLAN-encapsulated on the underlay (blue)"))
    lay.text(PAD, legend_y, "Legend:", "canvas", SIZE, weight="bold")
    lx = PAD + text_width("Legend: ", SIZE) + 6
    legend_items = []
    row_y = legend_y
    for kind, text in legend:
        w = 34 + text_width(text, SMALL) + 18
        if lx + w > width - PAD:
            lx = PAD + text_width("Legend: ", SIZE) + 6
            row_y += ROW
        legend_items.append((kind, lx, row_y))
        lay.text(lx + 34, row_y, text, "canvas", SMALL)
        lx += w
    box_note = "boxes are network namespaces; each dashed line is one interface (veth names in small print)"
    for ln in wrap(box_note, width - 2 * PAD, SMALL):
        row_y += ROW
        lay.text(PAD, row_y, ln, "canvas", SMALL, fill=COLOURS["dim"])
    lay.height = row_y + 14
    lay.width = width
    # boxes
    lay.boxes["canvas"] = Box(0, 0, width, lay.height, "canvas")
    lay.boxes["left"] = Box(0, top, left_w, body_bottom - top, "left")
    lay.boxes["notes"] = Box(notes_x, top, note_w, body_bottom - top, "notes")
    cap = report["capture"]
    title = (f"netkit trace: {cap['frames']} frames on {len(report['points'])} interfaces, "
             f"{len(report['flows'])} flow(s), {len(report['drops'])} drop(s)" + (" (brief)" if brief else ""))
    lay.text(PAD, 22, fit(title, width - 2 * PAD, 14), "canvas", 14, weight="bold")
    for ln in lanes:
        if "box" in ln:
            gx, gw, gtitle = ln["box"]
            name = f"ns:{ln['ns']}"
            lay.boxes[name] = Box(gx, top, gw, body_bottom - top, name)
            lay.text(gx + gw / 2, top + 15, gtitle, name, SIZE, anchor="middle", weight="bold")
        lname = f"lane:{ln['point']}"
        lay.boxes[lname] = Box(ln["x"] - ln["w"] / 2, top + 18, ln["w"], head_h - 12, lname)
        lay.text(ln["x"], top + 34, fit(ln["title"], ln["w"] - 2 * PAD, SIZE), lname, SIZE, anchor="middle")
        if ln["detail"]:
            lay.text(ln["x"], top + 47 - 2, fit(ln["detail"], ln["w"] - 2 * PAD, SMALL), lname, SMALL,
                     anchor="middle", fill=COLOURS["dim"])
    lay.shapes = _draw(lay, lanes, elements, legend_items, top, head_h, body_bottom, width)
    return lay


def _arrow(x1, y1, x2, y2, kind) -> str:
    colour = COLOURS[kind if kind in ("nat", "echo", "tunnel") else "arrow"]
    dash = ' stroke-dasharray="5 3"' if kind == "echo" else ""
    sw = 2.2 if kind in ("nat", "tunnel") else 1.3
    marker = {"nat": "nat", "echo": "echo", "tunnel": "tunnel"}.get(kind, "arrow")
    if abs(x1 - x2) < 1:
        return (f'<path d="M{x1:.1f},{y1:.1f} C{x1 + 34:.1f},{y1:.1f} {x1 + 34:.1f},{y2:.1f} {x1 + 5:.1f},{y2:.1f}" '
                f'fill="none" stroke="{colour}" stroke-width="{sw}"{dash} marker-end="url(#{marker})"/>')
    return (f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
            f'stroke-width="{sw}"{dash} marker-end="url(#{marker})"/>')


def _draw(lay: Layout, lanes, elements, legend_items, top, head_h, bottom, width) -> list[str]:
    out = []
    lane_x = {ln["point"]: ln["x"] for ln in lanes}
    hosts = {ln["ns"] for ln in lanes if ln.get("host")}
    for name, b in lay.boxes.items():
        if name.startswith("ns:"):
            ns = "host" if name[3:] in hosts else name[3:]
            out.append(f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" rx="8" '
                       f'fill="{NS_FILL.get(ns, "#eafaf1")}" stroke="{COLOURS["box_line"]}"/>')
    for ln in lanes:
        out.append(f'<line x1="{ln["x"]:.1f}" y1="{top + head_h + 4:.1f}" x2="{ln["x"]:.1f}" y2="{bottom - 4:.1f}" '
                   f'stroke="{COLOURS["lane"]}" stroke-dasharray="4 3"/>')
    for kind, data in elements:
        if kind == "flow":
            y, _ = data
            out.append(f'<line x1="4" y1="{y - ROW + 5:.1f}" x2="{width - 4:.1f}" y2="{y - ROW + 5:.1f}" '
                       f'stroke="#d5dbdb"/>')
        elif kind == "dot":
            y, h = data
            if h["point"] in lane_x:
                out.append(f'<circle cx="{lane_x[h["point"]]:.1f}" cy="{y - 4:.1f}" r="4" fill="{COLOURS["arrow"]}"/>')
        elif kind == "hop":
            y, src, dst, k = data
            if src in lane_x and dst in lane_x:
                out.append(_arrow(lane_x[src], y - ROW + 2, lane_x[dst] + (0 if lane_x[src] == lane_x[dst] else
                                  (-4 if lane_x[dst] > lane_x[src] else 4)), y - 4, k))
        elif kind == "drop":
            y, point = data
            if point in lane_x:
                x = lane_x[point] + 12
                out.append(f'<path d="M{x - 5:.1f},{y - 9:.1f} L{x + 5:.1f},{y + 1:.1f} M{x + 5:.1f},{y - 9:.1f} '
                           f'L{x - 5:.1f},{y + 1:.1f}" stroke="{COLOURS["drop"]}" stroke-width="3"/>')
        elif kind == "brief":
            y, hops, xs, pkt = data
            if xs:
                out.append(f'<line x1="{min(xs):.1f}" y1="{y - 4:.1f}" x2="{max(xs):.1f}" y2="{y - 4:.1f}" '
                           f'stroke="{COLOURS["arrow"]}" stroke-width="1.2"/>')
            for h in hops:
                if h["point"] not in lane_x:
                    continue
                colour = COLOURS["nat"] if h["nat"] else COLOURS["echo"] if h.get("echo") else COLOURS["arrow"]
                out.append(f'<circle cx="{lane_x[h["point"]]:.1f}" cy="{y - 4:.1f}" r="{5 if h["nat"] else 3.5}" '
                           f'fill="{colour}"/>')
            if pkt.get("drop") and hops and hops[-1]["point"] in lane_x:
                x = lane_x[hops[-1]["point"]] + 12
                out.append(f'<path d="M{x - 5:.1f},{y - 9:.1f} L{x + 5:.1f},{y + 1:.1f} M{x + 5:.1f},{y - 9:.1f} '
                           f'L{x - 5:.1f},{y + 1:.1f}" stroke="{COLOURS["drop"]}" stroke-width="3"/>')
    for kind, x, y in legend_items:
        if kind == "dot":
            out.append(f'<circle cx="{x + 14:.1f}" cy="{y - 4:.1f}" r="4" fill="{COLOURS["arrow"]}"/>')
        elif kind == "drop":
            out.append(f'<path d="M{x + 9:.1f},{y - 9:.1f} L{x + 19:.1f},{y + 1:.1f} M{x + 19:.1f},{y - 9:.1f} '
                       f'L{x + 9:.1f},{y + 1:.1f}" stroke="{COLOURS["drop"]}" stroke-width="3"/>')
        else:
            out.append(_arrow(x, y - 4, x + 28, y - 4, kind))
    return out


def to_svg(report: dict, brief: bool = False) -> str:
    lay = layout(report, brief)
    e = html.escape
    w, h = int(lay.width + 0.5), int(lay.height + 0.5)
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'font-family="{FONT}" font-size="{SIZE}">',
            '<defs>' + "".join(
                f'<marker id="{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
                f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{COLOURS[c]}"/></marker>'
                for name, c in (("arrow", "arrow"), ("nat", "nat"), ("echo", "echo"), ("tunnel", "tunnel"))) + '</defs>',
            f'<rect width="{w}" height="{h}" fill="white"/>']
    body = list(lay.shapes)
    for t in lay.texts:
        if t.box == "canvas":  # text across the namespace boxes gets a white ground to stay legible
            x0, y0, x1, y1 = t.bbox
            body.append(f'<rect x="{x0 - 2:.1f}" y="{y0 - 1:.1f}" width="{x1 - x0 + 4:.1f}" height="{y1 - y0 + 2:.1f}" '
                        'fill="white" fill-opacity="0.85"/>')
        attrs = f'x="{t.x:.1f}" y="{t.y:.1f}" fill="{t.fill}"'
        if t.size != SIZE:
            attrs += f' font-size="{t.size}"'
        if t.anchor != "start":
            attrs += f' text-anchor="{t.anchor}"'
        if t.weight != "normal":
            attrs += f' font-weight="{t.weight}"'
        body.append(f'<text {attrs} xml:space="preserve">{e(t.text)}</text>')
    return "\n".join(head + body + ["</svg>"]) + "\n"
