"""Plain-text tables and stable JSON for the CLI (no rich: `network ls` must start fast)."""
from __future__ import annotations

import json
import sys
from typing import Callable


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def emit_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def emit(text: str) -> None:
    print(text)


def emit_plan(lines: list[str]) -> None:
    """What --dry-run prints: the commands the change stands for, one a line."""
    if not lines:
        print("# nothing to change")
    for line in lines:
        print(line)


def emit_inspect(data: dict, as_json: bool) -> None:
    if as_json:
        emit_json(data)
    else:
        emit_text(data)


def emit_formatted(template: str, items: list[dict], headers: dict[str, str] | None = None) -> None:
    """Docker's `--format`: `json` (one JSON object a line), `table TEMPLATE` (a header line and
    aligned columns, as Docker's tabwriter does), or a Go template run once per item."""
    from netkit import gotemplate

    if template == "json":
        for item in items:
            print(json.dumps(item, separators=(",", ":")))
        return
    if template.startswith("table"):
        row, header = gotemplate.table_header(template, headers or {})
        compiled = gotemplate.Template(row)
        lines = [compiled.render(item) for item in items]
        cells = [line.split("\t") for line in [header] + lines]
        width = max(len(c) for c in cells)
        emit(table(cells[0] + [""] * (width - len(cells[0])),
                   [c + [""] * (width - len(c)) for c in cells[1:]]))
        return
    compiled = gotemplate.Template(template)  # parsed once: a bad template fails before any output
    for item in items:
        print(compiled.render(item))


def emit_text(data) -> None:
    """netkit's views as readable `key: value` lines: nested maps indented, lists comma-separated."""
    for line in text_lines(data):
        print(line)


def text_lines(data, indent: str = "") -> list[str]:
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:" + ("" if value else " -"))
            lines += text_lines(value, indent + "  ")
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            lines.append(f"{indent}{key}:" + ("" if value else " -"))
            for i, item in enumerate(value):
                lines.append(f"{indent}  [{i}]")
                lines += text_lines(item, indent + "    ") if isinstance(item, dict) else [f"{indent}    {item}"]
        else:
            lines.append(f"{indent}{key}: {scalar(value)}")
    return lines


def scalar(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"  # as in the config file and --json
    if isinstance(value, list):
        return ", ".join(scalar(v) for v in value) if value else "-"
    return str(value)


def emit_inspected(names: list[str], format_: str | None, own: bool, text: bool,
                   own_view: Callable[[str], dict], docker_doc: Callable[[str], dict]) -> None:
    """What both `inspect` commands print: netkit's own view of each name (--netkit as JSON,
    --text as text), or Docker's array of `docker_doc(name)`, or -f's template run on each."""
    if own or text:
        for name in names:
            emit_inspect(own_view(name), not text)
        return
    docs = [docker_doc(name) for name in names]  # all found before any output
    if format_:
        emit_formatted(format_, docs)
    else:
        emit_docker_json(docs)


def emit_docker_json(docs: list) -> None:
    """Docker's inspect output: a JSON array, 4-space indent, fields in Docker's order."""
    json.dump(docs, sys.stdout, indent=4)
    sys.stdout.write("\n")
