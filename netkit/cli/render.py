"""Plain-text tables and stable JSON for the CLI (no rich: `network ls` must start fast)."""
from __future__ import annotations

import json
import sys


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
        for key, value in data.items():
            print(f"{key}: {value}")
