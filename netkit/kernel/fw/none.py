"""Backend `none`: netkit writes no firewall rules at all (the config's "iptables": false, as Docker's
`--iptables=false`). Publishing is refused by the engine; everything here is empty."""
from __future__ import annotations

from contextlib import nullcontext

from netkit import rules
from netkit.kernel.fw import Availability, ResetReport


class NoneBackend:
    name = "none"
    syntax = "iptables"
    show_command = "(none: netkit writes no rules)"
    manages_rules = False

    def available(self) -> Availability:
        return Availability(True)

    def locked(self):
        return nullcontext(self)

    def snapshot(self) -> dict:
        return {}

    def apply(self, ops: list[rules.Op], thorough: bool = True) -> None:
        """Nothing to write: the reconciler plans an empty rule set for this backend
        (manages_rules is False), and whatever it asks is dropped here."""

    def native(self) -> list[str]:
        return []

    def render(self, ops: list[rules.Op]) -> list[str]:
        return []

    def render_ruleset(self, desired) -> list[str]:
        return []

    def reset(self, forward_policy: str | None = None, dry_run: bool = False) -> ResetReport:
        return ResetReport(0, 0, [])

    def leftovers(self) -> list[str]:
        return []

    def policy(self, snapshot: dict, table: str, chain: str) -> str | None:
        return None
