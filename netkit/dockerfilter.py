"""Docker's `--filter KEY=VALUE` for `network ls` and `container ls`, pure.

As in Docker: several values of one key match if any does (OR), different keys must all match
(AND); `name=` matches a part of the name, `id=` a prefix of the ID, `label=KEY` a label's
presence and `label=KEY=VALUE` its value. An unknown key is a one-line error."""
from __future__ import annotations

from typing import Callable

from netkit.errors import UserError


def parse(items: list[str], keys: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"bad --filter '{item}': use KEY=VALUE, KEY one of {', '.join(keys)}")
        if key not in keys:
            raise UserError(f"invalid --filter key '{key}': use one of {', '.join(keys)}")
        out.setdefault(key, []).append(value)
    return out


def label_matches(labels: dict[str, str], wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    return key in labels and (not eq or labels[key] == value)


def matches(filters: dict[str, list[str]], tests: dict[str, Callable[[str], bool]]) -> bool:
    """True when, for every filter key given, one of its values passes tests[key]."""
    return all(any(tests[key](v) for v in values) for key, values in filters.items())
