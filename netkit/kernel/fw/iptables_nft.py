"""Backend `iptables-nft`: netkit's iptables rules, unchanged, in the kernel's nf_tables through the
xtables-nft tools, so `iptables -t nat -nL`, `iptables -S` and `iptables-save` on a host whose
`iptables` is the nft one (Debian 12 and every current distribution) show netkit's chains where
they show Docker's.

One change = one `iptables-nft-restore --noflush -w` reading the whole delta (rules.render's text,
which is restore syntax), never one process per rule. Each table's part is one nf_tables
transaction. Reading back is `iptables-nft-save`. The xtables lock is held by netkit around the
read-diff-apply (iptables-nft itself relies on nf_tables transactions, -w is passed for the tools'
own habit); if a later table fails after an earlier one was committed, the earlier ones are undone
as the legacy backend does.

A change made only of appends and deletes of native rules (`-d IP/32 ! -i BRIDGE -j DROP`, the
per-container raw rule: nftexpr.py) skips the process: nfthandles.change sends it as one nf_tables
transaction, encoded byte for byte as iptables-nft encodes it, so the tools read it as their own.
"""
from __future__ import annotations

import os
import re
import subprocess

from netkit import programs, rules
from netkit.errors import KernelError
from netkit.kernel.fw import Availability, ResetReport, nfthandles
from netkit.kernel.fw.legacy import describe_part, render_part, render_ruleset, reset_with
from netkit.kernel import xtlock


# Tools (by resolved path) that were seen to work. Only success is remembered: nf_tables support
# does not go away under a running kernel, while a failure may be cured (a module loaded). A
# one-shot command asks once anyway; netkitd asks before it forks (kernel/warm.py), so that its
# commands skip this ~5-10 ms process.
_WORKING: set[str] = set()


def works() -> Availability:
    """Whether iptables-nft works here: `iptables-nft-save -t filter` runs (no nf_tables in the
    kernel makes it fail)."""
    tool = programs.require("iptables-nft-save")
    target = os.path.realpath(tool)  # what runs: a multi-call binary that goes by argv[0]
    if target in _WORKING:
        return Availability(True)
    proc = subprocess.run([tool, "-t", "filter"], capture_output=True, text=True)
    if proc.returncode != 0:
        return Availability(False, f"iptables-nft does not work here: {proc.stderr.strip() or proc.returncode} "
                                   "(no nf_tables in the kernel?)")
    _WORKING.add(target)
    return Availability(True)


class IptablesNftBackend:
    name = "iptables-nft"
    syntax = "iptables"
    show_command = "iptables-nft-save"
    manages_rules = True

    def __init__(self):
        self._lock = xtlock.shared()

    def available(self) -> Availability:
        for tool in ("iptables-nft-restore", "iptables-nft-save"):
            if programs.find(tool) is None:
                return Availability(False, programs.missing_message(tool))
        return works()

    def locked(self):
        return self._lock.held()

    def snapshot(self) -> dict:
        proc = subprocess.run([programs.require("iptables-nft-save")], capture_output=True, text=True)
        if proc.returncode != 0:
            raise KernelError(f"iptables-nft-save failed: {proc.stderr.strip() or proc.returncode}")
        return rules.parse_save(proc.stdout)

    def apply(self, ops: list[rules.Op], thorough: bool = True) -> None:
        if not ops:
            return
        with self.locked():
            # A change of native rules (nftexpr.py) appended and deleted in-process, one nf_tables
            # transaction (nfthandles.py): no process. Anything else, or a refusal, goes through
            # iptables-nft-restore.
            if nfthandles.change(ops):
                if thorough:
                    self._verify(ops)
                return
            nfthandles.listen()
            pid = self._restore(ops)
            nfthandles.learn(pid, ops)
            if thorough:
                self._verify(ops)

    def _restore(self, ops: list[rules.Op]) -> int:
        """Run the delta through iptables-nft-restore; its pid (nf_tables names it in its events)."""
        text = "\n".join(rules.render(ops)) + "\n"
        proc = subprocess.Popen([programs.require("iptables-nft-restore"), "--noflush", "-w"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, stderr = proc.communicate(text)
        if proc.returncode == 0:
            return proc.pid
        error = stderr.strip().splitlines()[0] if stderr.strip() else f"exit {proc.returncode}"
        committed = _committed_tables(text, stderr)
        undo = [o for t in committed for o in _inverse([o for o in ops if o.table == t])]
        if undo:
            try:
                subprocess.run([programs.require("iptables-nft-restore"), "--noflush", "-w"],
                               input="\n".join(rules.render(undo)) + "\n", capture_output=True, text=True)
            except OSError:
                pass
        first = next((o.text() for o in ops), "")
        raise KernelError(f"iptables-nft-restore: {error}; while applying {len(ops)} change(s) starting with "
                          f"`{first}`; nothing was changed")

    def _verify(self, ops: list[rules.Op]) -> None:
        """After the write: every added rule and new chain is there (someone writing without the
        lock, or a tool rewriting a rule, would show here)."""
        part = rules.netkit_part(self.snapshot())
        missing = [o.text() for o in ops if o.action in ("A", "I")
                   and o.spec not in part.get(o.table, {}).get(o.chain, [])]
        missing += [f"-N {o.chain}" for o in ops if o.action == "N" and o.chain not in part.get(o.table, {})]
        if missing:
            raise KernelError(f"iptables-nft: after the change, {len(missing)} change(s) were not found in the "
                              f"kernel (first: {missing[0]}); another program may be rewriting netkit's chains")

    def native(self) -> list[str]:
        return render_part(rules.netkit_part(self.snapshot()))

    def render(self, ops: list[rules.Op]) -> list[str]:
        return rules.render(ops)

    def render_ruleset(self, desired: rules.RuleSet) -> list[str]:
        return render_ruleset(desired)

    def reset(self, forward_policy: str | None = None, dry_run: bool = False) -> ResetReport:
        return reset_with(self, forward_policy, dry_run)

    def leftovers(self) -> list[str]:
        if programs.find("iptables-nft-save") is None:
            return []
        try:
            return describe_part(rules.netkit_part(self.snapshot()), self.name)
        except KernelError:
            return []

    def policy(self, snapshot: dict, table: str, chain: str) -> str | None:
        return snapshot.get(table, {}).get(":policy", {}).get(chain)


def _committed_tables(text: str, stderr: str) -> list[str]:
    """Tables whose COMMIT came before the failing line ("line N failed"): those were applied."""
    match = re.search(r"line (\d+) failed", stderr)
    if not match:
        return []
    failed = int(match.group(1))
    done, table = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if number >= failed:
            break
        if line.startswith("*"):
            table = line[1:]
        elif line == "COMMIT" and table:
            done.append(table)
    return done


def _inverse(ops: list[rules.Op]) -> list[rules.Op]:
    from netkit.kernel.firewall import inverse

    return inverse(ops)
