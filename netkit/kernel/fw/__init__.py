"""Firewall backends: the one interface the engine asks of the firewall (the seam between the
reconciler and the kernel's firewalls), and which backend to use.

The reconciler (engine/reconcile.py) computes the desired rule set (`rules.RuleSet`, pure, in
iptables-save text), reads the active backend's rules as a snapshot, and hands the difference
(`rules.diff` -> list of `rules.Op`) to `apply`, wrapped in an `ops.FirewallChange` step that the
executor runs and can undo (`rules.inverse`). Context.firewall is the active backend
(`for_config`); reset, doctor and `netkit rules` go through the same object.

A backend keeps netkit's rules (rules.py's plan) in one of the kernel's firewalls:

  iptables-legacy  legacy x_tables through python-iptables (kernel/firewall.py, unchanged)
  iptables-nft     the same iptables rules in nf_tables through iptables-nft-restore, so plain
                   `iptables -S` / `iptables-save` on a current distribution shows them
  nftables         native nftables: netkit's own `table ip netkit` (nftrules.py)
  none             no rules at all (the config's "iptables": false)

Whatever the backend, the reconciler speaks one language: rules.Op deltas in, and read-backs in
rules.parse_save's snapshot shape ({table: {chain: [iptables-save spec]}, ":policy": ...}), so
rules.diff works unchanged. Each backend also speaks its own syntax for people: `native()` (what
`netkit rules` shows), `render(ops)` (what `--dry-run` prints).

`choose()` picks the backend from the config key `firewall_backend` (auto by default: whatever
the host's `iptables` command is, so the rules are where users look).
"""
from __future__ import annotations

import os
import subprocess
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from netkit import programs
from netkit.rules import Op

NAMES = ("iptables-legacy", "iptables-nft", "nftables", "none")
KERNEL_NAMES = NAMES[:3]  # the backends that hold rules in the kernel
SETTINGS = ("auto",) + NAMES


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""  # one line; why not, when not ok


@dataclass(frozen=True)
class ResetReport:
    removed_chains: int  # netkit chains removed (base chains of nftables included)
    kept_user_rules: int  # rules of NETKIT-USER kept (it stays when the user filled it)
    lines: list[str]  # what was (or, dry-run, would be) done, in the backend's syntax


@runtime_checkable
class FirewallBackend(Protocol):
    name: str
    syntax: str  # "iptables" or "nft": the language of native()/render()
    show_command: str  # what a user types to see the rules
    manages_rules: bool  # False for "none"

    def available(self) -> Availability:
        """Can this backend work here (tools, library, kernel support)? Creates nothing."""

    def locked(self) -> AbstractContextManager:
        """Hold the xtables lock (re-entrant in this process, one lock for every backend) across
        snapshot -> diff -> apply."""

    def snapshot(self) -> dict:
        """netkit's chains and hooks read back, rules.parse_save's shape (may hold foreign chains
        too for the iptables backends: rules.netkit_part picks netkit's part)."""

    def apply(self, ops: list[Op], thorough: bool = True) -> object:
        """Apply the delta (N/A/I/D/F/X/P ops) as one batch (one transaction or one commit per
        table, committed tables undone when a later one fails). `thorough`: read back every added
        rule; False: the per-container fast path (appends/deletes in unordered chains), verify
        cheaply."""

    def native(self) -> list[str]:
        """netkit's rules as the kernel holds them, in this backend's own syntax."""

    def render(self, ops: list[Op]) -> list[str]:
        """The delta in this backend's syntax (--dry-run)."""

    def render_ruleset(self, desired) -> list[str]:
        """A whole desired rules.RuleSet in this backend's syntax (golden files, `rules --dry-run`)."""

    def reset(self, forward_policy: str | None = None, dry_run: bool = False) -> ResetReport:
        """Remove every netkit object of this backend (NETKIT-USER stays if it holds rules);
        put the FORWARD policy back to `forward_policy` when given."""

    def leftovers(self) -> list[str]:
        """netkit objects present in this backend, one line each (doctor: rules left in a backend
        that is not the active one). Creates nothing."""

    def policy(self, snapshot: dict, table: str, chain: str) -> str | None:
        """The policy of a built-in chain in `snapshot` (the FORWARD policy netkit sets)."""


@dataclass(frozen=True)
class Choice:
    name: str
    reason: str


# `iptables -V`'s answer by the command's resolved path (the alternatives symlink's target): a
# switch of the host's `iptables` is seen at once, even by a warm netkitd that asked before.
_IPTABLES_KIND: dict[str, str] = {}


def iptables_kind() -> str | None:
    """What the host's `iptables` command is: "nf_tables", "legacy", or None without one."""
    exe = programs.find("iptables")
    if exe is None:
        return None
    target = os.path.realpath(exe)
    if target not in _IPTABLES_KIND:
        out = subprocess.run([exe, "-V"], capture_output=True, text=True).stdout
        _IPTABLES_KIND[target] = "nf_tables" if "(nf_tables)" in out else "legacy" if "(legacy)" in out else ""
    return _IPTABLES_KIND[target] or None


def choose(setting: str = "auto", iptables: bool = True, source: str = "(defaults)") -> Choice:
    """Which backend, and one line saying why."""
    if not iptables:
        return Choice("none", f"{source} sets \"iptables\": false")
    if setting != "auto":
        return Choice(setting, f"{source} sets \"firewall_backend\": \"{setting}\"")
    kind = iptables_kind()
    if kind == "nf_tables":
        return Choice("iptables-nft", "auto: the host's `iptables` is iptables-nft (`iptables -V` says nf_tables), "
                                      "so its rules show in plain `iptables -S`")
    if kind == "legacy":
        return Choice("iptables-legacy", "auto: the host's `iptables` is iptables-legacy (`iptables -V` says legacy)")
    return Choice("nftables", "auto: no `iptables` command on this host; native nftables")


def for_config(cfg) -> tuple[FirewallBackend, Choice]:
    """The backend a config (netkit.config.Config) asks for, and why. A chosen backend that cannot
    work here is an environment error naming what is missing and the way out."""
    from netkit.errors import EnvError

    choice = choose(cfg.firewall_backend, cfg.iptables, cfg.source)
    backend = get(choice.name)
    state = backend.available()
    if not state.ok:
        raise EnvError(f"firewall backend {choice.name} ({choice.reason}) cannot work here: {state.reason}; "
                       f"set \"firewall_backend\" to another one in {cfg.source}")
    return backend, choice


def get(name: str) -> FirewallBackend:
    """The backend called `name` (one instance per process)."""
    if name not in NAMES:
        raise KeyError(name)
    if name not in _INSTANCES:
        if name == "iptables-legacy":
            from netkit.kernel.fw.legacy import LegacyBackend as cls
        elif name == "iptables-nft":
            from netkit.kernel.fw.iptables_nft import IptablesNftBackend as cls
        elif name == "nftables":
            from netkit.kernel.fw.nftables import NftablesBackend as cls
        else:
            from netkit.kernel.fw.none import NoneBackend as cls
        _INSTANCES[name] = cls()
    return _INSTANCES[name]


_INSTANCES: dict[str, FirewallBackend] = {}
