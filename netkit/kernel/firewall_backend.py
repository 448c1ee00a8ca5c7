"""The seam between netkit's reconciler and a firewall backend: what any backend offers.

The reconciler (engine/reconcile.py) computes the desired rule set (`rules.RuleSet`, pure, in
iptables-save text), reads the backend's current rules as a snapshot in `rules.parse_save` form,
and hands the difference (`rules.diff` -> list of `rules.Op`) to `apply`, wrapped in an
`ops.FirewallChange` step that the executor runs and can undo (`rules.inverse`). A backend that
does not speak iptables natively (nftables) translates Ops and snapshots at this boundary; the
reconciler, the planners and the golden files stay the same.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from netkit.rules import Op


class FirewallBackend(Protocol):
    name: str  # shown in messages: "iptables-legacy"
    show_command: str  # the command that shows its rules: "iptables-legacy-save"

    def locked(self) -> AbstractContextManager:
        """Hold the backend's lock (re-entrant in this process) across snapshot -> apply."""

    def snapshot(self) -> dict:
        """Every table the backend has: {table: {chain: [spec, ...], ":policy": {chain: policy}}},
        specs in iptables-save text (what `rules.parse_save` returns)."""

    def apply(self, ops: list[Op], thorough: bool = True) -> object:
        """Apply ops (N/A/I/D/F/X/P) all or nothing per table, reverting committed tables if a
        later one fails. `thorough`: read back every added rule; otherwise a cheap check is enough
        (only appends/deletes in unordered chains, the per-container fast path)."""

    def policy(self, snapshot: dict, table: str, chain: str) -> str | None:
        """A built-in chain's policy in a snapshot."""
