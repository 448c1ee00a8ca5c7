"""Backend `nftables`: netkit's rules natively in nftables, in netkit's own `table ip netkit`
(layout and translation: netkit/nftrules.py). `nft list ruleset` shows it beside everyone else's
tables; nothing outside that table is ever touched.

Every change is one nft script run through libnftables in-process (kernel/fw/libnft.py): one
transaction, so a failure changes nothing and nobody sees a half-made chain. Published ports and
per-container drops are set elements, so a publish is one element whatever the number of
mappings. Read-back lists the table as JSON and turns it into rules.py's iptables-save text for
the reconciler (nftrules.normalize).
"""
from __future__ import annotations

from netkit import nftrules, rules
from netkit.errors import EnvError, KernelError
from netkit.kernel.fw import Availability, ResetReport
from netkit.kernel.fw import libnft
from netkit.kernel import xtlock

TABLE = f"table {nftrules.QUALIFIED}"


class NftablesBackend:
    name = "nftables"
    syntax = "nft"
    show_command = f"nft list {TABLE}"
    manages_rules = True

    def __init__(self):
        self._lock = xtlock.shared()

    def available(self) -> Availability:
        try:
            libnft.load()
        except EnvError as err:
            return Availability(False, str(err))
        rc, _, err = libnft.run("list tables")
        if rc != 0:
            return Availability(False, f"nftables does not work here: {err.strip() or rc} (no nf_tables in the kernel?)")
        return Availability(True)

    def locked(self):
        return self._lock.held()

    def _listing(self) -> dict | None:
        return libnft.list_json(TABLE)

    def snapshot(self) -> dict:
        listing = self._listing()
        return {} if listing is None else nftrules.normalize(listing)

    def apply(self, ops: list[rules.Op], thorough: bool = True) -> None:
        if not ops:
            return
        with self.locked():
            needed = nftrules.needs_current(ops)
            current: dict = {}
            if needed:
                snap = self.snapshot()
                current = {key: list(snap.get(key[0], {}).get(key[1], [])) for key in needed}
                # Element-backed chains: only their ordinary rules are rewritten, never the elements.
                for key in needed:
                    if key[1] in nftrules.LOOKUPS:
                        current[key] = [s for s in current[key]
                                        if (p := nftrules.structured(s)) is None or nftrules.element(key[1], p) is None]
            try:
                script = nftrules.ops_script(ops, current)
            except ValueError as err:
                raise KernelError(f"nftables: {err}") from None
            libnft.check("\n".join(script) + "\n")
            if thorough:
                self._verify(ops)
            if any(o.action == "X" for o in ops):
                self._drop_if_empty()

    def _drop_if_empty(self) -> None:
        """After netkit's chains were removed (an undo, or a sync to a state with no network): the
        table left holds only empty base chains and sets; delete it, so that nothing of netkit's
        stays in `nft list ruleset`. Not while the forward base chain's policy is drop: that is
        netkit's FORWARD policy, still in force."""
        snap = self.snapshot()
        if any(c.startswith(rules.PREFIX) or specs for part in snap.values() for c, specs in part.items()
               if c != ":policy"):
            return
        if snap.get(rules.FILTER, {}).get(":policy", {}).get("FORWARD", "ACCEPT") != "ACCEPT":
            return
        libnft.check(f"delete {TABLE}\n")

    def _verify(self, ops: list[rules.Op]) -> None:
        snap = self.snapshot()
        missing = [o.text() for o in ops if o.action in ("A", "I") and o.spec not in snap.get(o.table, {}).get(o.chain, [])]
        if missing:
            raise KernelError(f"nftables: after the change, {len(missing)} rule(s) were not found in {TABLE} "
                              f"(first: {missing[0]}); another program may be rewriting netkit's table")

    def native(self) -> list[str]:
        rc, out, err = libnft.run(f"list {TABLE}")
        if rc != 0:
            return []
        return out.rstrip("\n").splitlines()

    def render(self, ops: list[rules.Op]) -> list[str]:
        """The delta as nft commands. Chains that lose or reorder rules are rewritten whole at
        apply time (from what the kernel holds then); here that shows as a comment per rule."""
        plain = [o for o in ops if not (o.action in ("D", "I") and (o.table, o.chain) in nftrules.needs_current([o]))]
        lines = nftrules.ops_script(plain)[1:] if plain else []
        for o in ops:
            if o not in plain:
                verb = "delete" if o.action == "D" else f"insert at {o.pos}"
                spec = nftrules.structured(o.spec)
                body = o.spec if spec is None else nftrules.statement(spec)
                lines.append(f"# rewrite chain {nftrules.nft_chain(o.table, o.chain)}: {verb} `{body}`")
        return lines

    def render_ruleset(self, desired: rules.RuleSet) -> list[str]:
        return nftrules.render_ruleset(desired)

    def reset(self, forward_policy: str | None = None, dry_run: bool = False) -> ResetReport:
        """Delete netkit's table; when NETKIT-USER holds rules, keep the table with only that chain.
        The forward policy lives in netkit's own base chain, so it goes with it."""
        with self.locked():
            snap = self.snapshot()
            if not snap:
                return ResetReport(0, 0, [])
            user = snap.get(rules.FILTER, {}).get(rules.CHAIN_USER) or []
            chains = [nftrules.nft_chain(t, c) for t, part in snap.items() for c in part if c != ":policy"]
            if user:
                keep = [c for c in chains if c != rules.CHAIN_USER]
                lines = [f"flush chain {nftrules.QUALIFIED} {c}" for c in keep]
                lines += [f"delete chain {nftrules.QUALIFIED} {c}" for c in keep]
                lines += [f"delete {nftrules.SETS[s].split()[0]} {nftrules.QUALIFIED} {s}"
                          for s in nftrules.SETS if s in self._set_names()]
                removed = len(keep)
            else:
                lines = [f"delete {TABLE}"]
                removed = len(chains)
            if not dry_run:
                libnft.check("\n".join(lines) + "\n")
        return ResetReport(removed, len(user), lines)

    def _set_names(self) -> set[str]:
        listing = self._listing() or {}
        return {(i.get("set") or i.get("map"))["name"] for i in listing.get("nftables", []) if "set" in i or "map" in i}

    def leftovers(self) -> list[str]:
        try:
            libnft.load()
            listing = self._listing()
        except (EnvError, KernelError):
            return []
        if listing is None:
            return []
        chains = sum(1 for i in listing.get("nftables", []) if "chain" in i)
        ruleset = sum(1 for i in listing.get("nftables", []) if "rule" in i)
        elements = sum(len((i.get("set") or i.get("map")).get("elem", [])) for i in listing.get("nftables", [])
                       if "set" in i or "map" in i)
        return [f"nftables: {TABLE} with {chains} chain(s), {ruleset} rule(s), {elements} set element(s)"]

    def policy(self, snapshot: dict, table: str, chain: str) -> str | None:
        return snapshot.get(table, {}).get(":policy", {}).get(chain)
