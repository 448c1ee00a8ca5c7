"""Per-rule packet counters of every firewall backend present in a network namespace, so that
the tracer can name the rule that dropped a packet: snapshot before the flow, snapshot after,
and the DROP/REJECT rule (or DROP policy) whose counter moved is the one.

Backend-agnostic and netns-local: each reader runs its backend's own save/list command inside
the netns and returns Counters keyed by where the rule sits. Readers today: the legacy x_tables
backend (`iptables-legacy-save -c`), iptables-nft (`iptables-nft-save -c`) and native nftables
(`nft -a list ruleset`, rules with a `counter` statement). A new backend plugs in with
register(name, function).
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from netkit import programs

XT_TABLES = ("raw", "mangle", "nat", "filter", "security")


@dataclass(frozen=True)
class Counter:
    backend: str  # iptables-legacy | iptables-nft | nftables
    table: str  # "filter", or for nftables "ip netkit"
    chain: str
    rule: str  # the rule as the backend prints it (counters left out); "policy DROP" for a policy
    position: int  # 1-based position in its chain; 0 for the policy
    verdict: str  # DROP | REJECT | ACCEPT | JUMP | OTHER
    packets: int

    @property
    def key(self) -> tuple:
        return (self.backend, self.table, self.chain, self.position, self.rule)

    def as_dict(self, delta: int | None = None) -> dict:
        d = {"backend": self.backend, "table": self.table, "chain": self.chain, "rule": self.rule,
             "verdict": self.verdict}
        if delta is not None:
            d["packets"] = delta
        return d


def _run(argv: list[str], path: str | None) -> str | None:
    if path:  # the backend's command sees only that netns
        argv = [programs.require("nsenter"), f"--net={path}", "--"] + argv
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


_SAVE_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")
_SAVE_POLICY = re.compile(r"^:(\S+) (\S+) \[(\d+):(\d+)\]")


def _verdict_xt(spec: str) -> str:
    words = spec.split()
    for i, w in enumerate(words[:-1]):
        if w in ("-j", "-g"):
            target = words[i + 1]
            return target if target in ("DROP", "REJECT", "ACCEPT") else "JUMP"
    return "OTHER"


def parse_save_counters(text: str, backend: str) -> list[Counter]:
    """`iptables-save -c` text -> Counters (rules and built-in chain policies)."""
    out, table, pos = [], None, {}
    for line in text.splitlines():
        if line.startswith("*"):
            table, pos = line[1:].strip(), {}
            continue
        m = _SAVE_POLICY.match(line)
        if m and table:
            chain, policy, packets = m.group(1), m.group(2), int(m.group(3))
            if policy != "-":
                out.append(Counter(backend, table, chain, f"policy {policy}", 0, policy, packets))
            continue
        m = _SAVE_RULE.match(line)
        if m and table:
            packets, chain, spec = int(m.group(1)), m.group(3), m.group(4)
            pos[chain] = pos.get(chain, 0) + 1
            out.append(Counter(backend, table, chain, f"-A {chain} {spec}", pos[chain], _verdict_xt(spec), packets))
    return out


def _xt_reader(program: str, backend: str):
    def read(path: str | None) -> list[Counter]:
        exe = programs.find(program)
        if not exe:
            return []
        text = _run([exe, "-c"], path)
        return parse_save_counters(text, backend) if text else []
    return read


_NFT_COUNTER = re.compile(r"\s*counter packets (\d+) bytes (\d+)")
_NFT_HANDLE = re.compile(r"\s*# handle \d+\s*$")


def parse_nft(text: str, skip_tables: set[str] = frozenset()) -> list[Counter]:
    """`nft -a list ruleset` text -> Counters of rules that carry a `counter` statement."""
    out, table, chain, pos = [], None, None, 0
    for raw in text.splitlines():
        line = raw.strip()
        words = line.split()
        if words[:1] == ["table"] and len(words) >= 3:
            table = f"{words[1]} {words[2]}"
            continue
        if words[:1] == ["chain"] and len(words) >= 2:
            chain, pos = words[1], 0
            continue
        if not line or line.startswith(("type ", "}", "policy ")) or table is None or chain is None:
            continue
        if table in skip_tables:
            continue
        pos += 1
        m = _NFT_COUNTER.search(line)
        if not m:
            continue
        rule = _NFT_HANDLE.sub("", _NFT_COUNTER.sub("", line)).strip()
        last = rule.split()[-1] if rule.split() else ""
        verdict = {"drop": "DROP", "reject": "REJECT", "accept": "ACCEPT"}.get(last, "JUMP" if "jump" in rule else "OTHER")
        if "reject" in rule.split():
            verdict = "REJECT"
        out.append(Counter("nftables", table, chain, rule, pos, verdict, int(m.group(1))))
    return out


def _nft_reader(path: str | None) -> list[Counter]:
    exe = programs.find("nft")
    if not exe:
        return []
    text = _run([exe, "-a", "list", "ruleset"], path)
    if not text:
        return []
    # iptables-nft keeps its rules in nft tables named after the x_tables ones: those are read
    # (and shown) by iptables-nft-save, in the syntax their owner wrote them in.
    skip = {f"{fam} {t}" for fam in ("ip", "ip6", "arp", "bridge") for t in XT_TABLES}
    return parse_nft(text, skip)


READERS: dict = {
    "iptables-legacy": _xt_reader("iptables-legacy-save", "iptables-legacy"),
    "iptables-nft": _xt_reader("iptables-nft-save", "iptables-nft"),
    "nftables": _nft_reader,
}


def register(name: str, reader) -> None:
    """Add a backend: reader(netns path or None) -> list[Counter]."""
    READERS[name] = reader


def snapshot(path: str | None = None) -> list[Counter]:
    """Every backend's counters in the netns at `path` (None: the caller's own)."""
    out: list[Counter] = []
    for reader in READERS.values():
        try:
            out += reader(path)
        except Exception:  # noqa: BLE001 - one backend that cannot be read must not hide the others
            continue
    return out


def moved(before: list[Counter], after: list[Counter]) -> list[tuple[Counter, int]]:
    """Counters that grew between two snapshots, with by how much (rules new since `before`
    count from 0)."""
    old = {c.key: c.packets for c in before}
    out = []
    for c in after:
        delta = c.packets - old.get(c.key, 0)
        if delta > 0:
            out.append((c, delta))
    return out


def available() -> list[str]:
    """Backends whose program exists here (for the report's notes)."""
    return [name for name, prog in (("iptables-legacy", "iptables-legacy-save"), ("iptables-nft", "iptables-nft-save"),
                                    ("nftables", "nft")) if programs.find(prog)] + \
        [n for n in READERS if n not in ("iptables-legacy", "iptables-nft", "nftables")]
