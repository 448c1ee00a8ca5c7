"""Backend `iptables-legacy`: the legacy x_tables through python-iptables, i.e. kernel/firewall.py's
IptablesLegacy, unchanged, behind the FirewallBackend interface. Rules are shown by
`iptables-legacy-save`; on hosts whose `iptables` is the nft one, plain `iptables` does not see them."""
from __future__ import annotations

import os

from netkit import programs, rules
from netkit.kernel.fw import Availability, ResetReport


class LegacyBackend:
    name = "iptables-legacy"
    syntax = "iptables"
    show_command = "iptables-legacy-save"
    manages_rules = True

    def __init__(self):
        from netkit.kernel import firewall

        self._fw = firewall.backend()

    def available(self) -> Availability:
        if programs.find("iptables-legacy-save") is None:
            return Availability(False, programs.missing_message("iptables-legacy-save"))
        if not os.path.exists("/proc/net/ip_tables_names"):
            return Availability(False, "the kernel has no legacy x_tables (ip_tables module); "
                                       "use firewall_backend iptables-nft or nftables")
        return Availability(True)

    def locked(self):
        return self._fw.locked()

    def snapshot(self) -> dict:
        return self._fw.snapshot()

    def apply(self, ops: list[rules.Op], thorough: bool = True) -> None:
        self._fw.apply(ops, thorough=thorough)

    def native(self) -> list[str]:
        return render_part(rules.netkit_part(self.snapshot()))

    def render(self, ops: list[rules.Op]) -> list[str]:
        return rules.render(ops)

    def render_ruleset(self, desired: rules.RuleSet) -> list[str]:
        return render_ruleset(desired)

    def reset(self, forward_policy: str | None = None, dry_run: bool = False) -> ResetReport:
        return reset_with(self, forward_policy, dry_run)

    def leftovers(self) -> list[str]:
        if programs.find("iptables-legacy-save") is None or not os.path.exists("/proc/net/ip_tables_names"):
            return []
        return describe_part(rules.netkit_part(self.snapshot()), self.name)

    def policy(self, snapshot: dict, table: str, chain: str) -> str | None:
        return snapshot.get(table, {}).get(":policy", {}).get(chain)


# ---- shared by both iptables backends ----------------------------------------------------------

def render_part(part: dict) -> list[str]:
    """netkit's part of a snapshot as iptables-save text (netkit's chains declared, hooks first)."""
    lines = []
    for table in rules.TABLES:
        chains = {c: s for c, s in part.get(table, {}).items() if c != ":policy"}
        if not chains:
            continue
        lines.append(f"*{table}")
        lines += [f":{c} - [0:0]" for c in chains if c.startswith(rules.PREFIX)]
        for chain in sorted(chains, key=lambda c: (c.startswith(rules.PREFIX), c)):
            lines += [f"-A {chain} {s}" for s in chains[chain]]
        lines.append("COMMIT")
    return lines


def render_ruleset(desired: rules.RuleSet) -> list[str]:
    """A whole desired rule set as iptables-save text, in the order rules.plan gives."""
    lines = []
    for table in rules.TABLES:
        lines.append(f"*{table}")
        lines += [f":{c} - [0:0]" for c in rules.CHAINS[table]]
        lines += [f"-A {c} {s}" for t, c, s in desired.hooks if t == table]
        for (t, c), specs in desired.rules.items():
            if t == table:
                lines += [f"-A {c} {s}" for s in specs]
        lines.append("COMMIT")
    return lines


def describe_part(part: dict, backend: str) -> list[str]:
    out = []
    for table in rules.TABLES:
        chains = part.get(table, {})
        mine = sorted(c for c in chains if c.startswith(rules.PREFIX))
        hooks = sum(len(s) for c, s in chains.items() if not c.startswith(rules.PREFIX) and c != ":policy")
        if mine or hooks:
            count = sum(len(chains[c]) for c in mine)
            out.append(f"{backend} {table}: {len(mine)} netkit chain(s) ({', '.join(mine)}) with {count} rule(s), "
                       f"{hooks} hook(s)")
    return out


def reset_with(backend, forward_policy: str | None, dry_run: bool) -> ResetReport:
    """Reset for the iptables backends: rules.reset_ops on what is there, plus the policy."""
    with backend.locked():
        snap = backend.snapshot()
        part = rules.netkit_part(snap)
        ops = rules.reset_ops(part)
        if forward_policy and backend.policy(snap, rules.FILTER, "FORWARD") not in (None, forward_policy):
            ops.append(rules.Op(rules.FILTER, "P", "FORWARD", forward_policy))
        if ops and not dry_run:
            backend.apply(ops)
    user = part.get(rules.FILTER, {}).get(rules.CHAIN_USER) or []
    return ResetReport(sum(1 for o in ops if o.action == "X"), len(user), backend.render(ops))
