"""The only code that touches iptables: applies rule ops (netkit.rules.Op) to the legacy x_tables
backend through python-iptables Rule/Match objects, and reads the rules back.

Every write holds the xtables lock (XTABLES_LOCKFILE or /run/xtables.lock, as iptables -w does),
refreshes the handle, changes one table, commits once, retries on EAGAIN, refreshes again and
checks that each added rule is really there (docs/facts.md, "python-iptables": unlocked or stale writers lose rules
silently). Reading uses `iptables-legacy-save`, which is fast and never creates a table.

kernel/fw/legacy.py puts this behind the one firewall interface (kernel/fw: FirewallBackend).
"""
from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import time

from netkit import programs
from netkit.errors import KernelError
from netkit.kernel import xtlock
from netkit.rules import TABLES, Op, inverse, parse_save

COMMIT_RETRIES = 6


class IptablesLegacy:
    name = "iptables-legacy"
    show_command = "iptables-legacy-save"

    def __init__(self):
        self._lock = xtlock.shared()
        self._check = None

    def locked(self):
        """Hold the xtables lock (re-entrant within this process)."""
        return self._lock.held()

    # ---- reading ---------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Every existing legacy table: {table: {chain: [spec], ":policy": {chain: policy}}}."""
        exe = programs.require("iptables-legacy-save")
        proc = subprocess.run([exe], capture_output=True, text=True)
        if proc.returncode != 0:
            raise KernelError(f"iptables-legacy-save failed: {proc.stderr.strip() or proc.returncode}")
        return parse_save(proc.stdout)

    # ---- writing ---------------------------------------------------------------------
    def apply(self, ops: list[Op], thorough: bool = True) -> list[tuple[str, list[Op]]]:
        """Apply ops table by table, one commit each; undo committed tables if a later one fails.
        Returns what was committed, per table.

        Read-back after the commit: `thorough` refreshes the handle and looks up every added rule
        and chain; otherwise (the publish fast path, rule appends/deletes only) the kernel's entry
        count of the table must have moved by exactly the number of rules added and deleted, which
        costs one getsockopt instead of re-reading a table of thousands of rules."""
        done: list[tuple[str, list[Op]]] = []
        with self.locked():
            try:
                for table in TABLES:
                    mine = [o for o in ops if o.table == table]
                    if mine:
                        self._apply_table(table, mine, "full" if thorough else "count")
                        done.append((table, mine))
            except BaseException:
                for table, applied in reversed(done):
                    try:
                        self._apply_table(table, inverse(applied), verify=None)
                    except Exception:  # noqa: BLE001 - the first error is the one to report
                        pass
                raise
        return done

    def _apply_table(self, table_name: str, ops: list[Op], verify: str | None = "full") -> None:
        from netkit.kernel import iptc_loader

        iptc = iptc_loader.load()
        delay = 0.002
        for attempt in range(COMMIT_RETRIES):
            table = iptc.Table(table_name, autocommit=False)
            table.refresh()  # a fresh handle: never commit over another writer's change
            before = entry_count(table_name) if verify == "count" else 0
            added = []
            try:
                for op in ops:
                    rule = self._run(iptc, table, op)
                    if rule is not None:
                        added.append((op.chain, rule))
                table.commit()
            except iptc.IPTCError as err:
                table.refresh()  # drop the half-built handle
                if _is_eagain(err) and attempt < COMMIT_RETRIES - 1:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise KernelError(f"iptables ({table_name}): {_describe(err, ops)}") from None
            if verify == "count":
                change = sum(1 if o.action in ("A", "I") else -1 for o in ops)
                after = entry_count(table_name)
                if after != before + change:
                    table.refresh()
                    raise KernelError(f"iptables ({table_name}): after commit the table has {after} entries, "
                                      f"expected {before + change}; another program may be writing without "
                                      "the xtables lock")
                # libiptc keeps a committed handle dirty: drop it unused (the next change starts
                # with refresh(), which makes a new one) rather than re-reading the whole table now.
                table._iptc.iptc_free(table._handle)
                table._handle = None
                return
            table.refresh()
            if verify:
                missing = [f"-A {chain} ..." for chain, rule in added if not self._exists(iptc, table, chain, rule)]
                missing += [f"-N {o.chain}" for o in ops if o.action == "N" and not table.is_chain(o.chain)]
                if missing:
                    raise KernelError(f"iptables ({table_name}): after commit, {len(missing)} change(s) were not "
                                      f"found in the kernel (first: {missing[0]}); another program may be writing "
                                      "without the xtables lock")
            return

    def _run(self, iptc, table, op: Op):
        if op.action == "N":
            if not table.is_chain(op.chain):
                table.create_chain(op.chain)
            return None
        if op.action == "X":
            if table.is_chain(op.chain):
                table.delete_chain(op.chain)
            return None
        if op.action == "F":
            table.flush_entries(op.chain)
            return None
        if op.action == "P":
            table.set_policy(op.chain, op.spec)
            return None
        rule = build_rule(iptc, op.spec, table)
        chain = iptc.Chain(table, op.chain)
        if op.action == "A":
            chain.append_rule(rule)
            return rule
        if op.action == "I":
            chain.insert_rule(rule, max(op.pos - 1, 0))
            return rule
        if op.action == "D":
            chain.delete_rule(rule)
            return None
        raise ValueError(f"unknown op {op.action}")

    def _exists(self, iptc, table, chain: str, rule) -> bool:
        if self._check is None:
            fn = iptc.ip4tc._libiptc.iptc_check_entry
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            self._check = fn
        buf, mask = rule.rule, rule.mask
        return self._check(chain.encode(), ctypes.cast(buf, ctypes.c_void_p), ctypes.cast(mask, ctypes.c_void_p),
                           ctypes.cast(table._handle, ctypes.c_void_p)) == 1

    def policy(self, snapshot: dict, table: str, chain: str) -> str | None:
        return snapshot.get(table, {}).get(":policy", {}).get(chain)


class _GetInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 32), ("valid_hooks", ctypes.c_uint), ("hook_entry", ctypes.c_uint * 5),
                ("underflow", ctypes.c_uint * 5), ("num_entries", ctypes.c_uint), ("size", ctypes.c_uint)]


_IPT_SO_GET_INFO = 64
_libc = None
# Raw sockets kept open, one per network namespace (by the inode of /proc/thread-self/ns/net):
# a socket answers for the netns it was made in, and making one per call costs more than the
# query. A process that moves to another netns (setns) gets that netns's own socket. An open
# socket pins its netns (so the inode cannot be reused meanwhile); only a few are kept.
_raw_socks: dict[int, object] = {}
_RAW_SOCKS_MAX = 8


def _raw_sock():
    import socket

    ns = os.stat("/proc/thread-self/ns/net").st_ino
    sock = _raw_socks.get(ns)
    if sock is None:
        while len(_raw_socks) >= _RAW_SOCKS_MAX:
            _raw_socks.pop(next(iter(_raw_socks))).close()
        sock = _raw_socks[ns] = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    return sock


def entry_count(table: str) -> int:
    """Number of entries of a legacy table as the kernel holds it (IPT_SO_GET_INFO), in the
    network namespace of the calling thread."""
    import socket

    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    info = _GetInfo(name=table.encode())
    size = ctypes.c_uint(ctypes.sizeof(info))
    if _libc.getsockopt(_raw_sock().fileno(), socket.IPPROTO_IP, _IPT_SO_GET_INFO, ctypes.byref(info),
                        ctypes.byref(size)):
        raise KernelError(f"cannot read table {table}: {os.strerror(ctypes.get_errno())}")
    return info.num_entries


_RULE_CLASS = None


def _rule_class(iptc):
    """iptc.Rule, except that a jump target is looked up in the one table being changed:
    iptc.Rule asks every table, which creates all five legacy tables in the netns for good."""
    global _RULE_CLASS
    if _RULE_CLASS is None:
        class NetkitRule(iptc.Rule):
            tables = property(lambda self: self._nk_tables)

        _RULE_CLASS = NetkitRule
    return _RULE_CLASS


def build_rule(iptc, spec: str, table=None):
    """iptables-save text -> iptc.Rule built from Rule/Match/Target objects (never iptc.easy).

    Understands what netkit writes: -s -d -i -o -p with optional '!', -m NAME --opt value...,
    -j/-g TARGET --opt value... Unknown match or option names fail loudly (libxtables errors).
    `table`: the iptc.Table the rule goes to (where jump targets are looked up).
    """
    tokens = spec.split()  # netkit's rules never need quoting (no comments, no spaces in values)
    rule = _rule_class(iptc)()
    rule._nk_tables = [table] if table is not None else []
    current = None
    neg = False
    i = 0
    attrs = {"-s": "src", "-d": "dst", "-i": "in_interface", "-o": "out_interface", "-p": "protocol"}
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            neg = True
            i += 1
            continue
        if tok in attrs:
            setattr(rule, attrs[tok], ("!" if neg else "") + tokens[i + 1])
            i += 2
        elif tok == "-m":
            current = rule.create_match(tokens[i + 1])
            i += 2
        elif tok in ("-j", "-g"):
            current = rule.create_target(tokens[i + 1], goto=tok == "-g")
            i += 2
        elif tok.startswith("--") and current is not None:
            values = []
            i += 1
            while i < len(tokens) and not tokens[i].startswith("-") and tokens[i] != "!":
                values.append(tokens[i])
                i += 1
            value = " ".join(values)
            current.set_parameter(tok[2:], ("!" + value) if neg else value)
        else:
            raise ValueError(f"cannot build a rule from {spec!r}: unexpected {tok!r}")
        neg = False
    return rule


def _is_eagain(err) -> bool:
    text = str(err)
    return "temporarily unavailable" in text or os.strerror(errno.EAGAIN) in text


def _describe(err, ops: list[Op]) -> str:
    first = next((o.text() for o in ops), "")
    return f"{err}; while applying {len(ops)} change(s) starting with `{first}`; nothing was changed in this table"


# ---- what else is on the host (for doctor) -------------------------------------------------

def nft_report() -> dict:
    """Rules of the nft backend: how many iptables-nft rules exist, and nft forward chains whose
    policy is drop (they drop netkit's forwarded traffic whatever the legacy rules say)."""
    out = {"iptables_nft_rules": None, "forward_drop_chains": []}
    exe = programs.find("iptables-nft-save")
    if exe:
        proc = subprocess.run([exe], capture_output=True, text=True)
        if proc.returncode == 0:
            out["iptables_nft_rules"] = sum(1 for line in proc.stdout.splitlines() if line.startswith("-A "))
    nft = programs.find("nft")
    if nft:
        proc = subprocess.run([nft, "list", "ruleset"], capture_output=True, text=True)
        if proc.returncode == 0:
            table = chain = None
            for line in proc.stdout.splitlines():
                words = line.split()
                if words[:1] == ["table"]:
                    table = " ".join(words[1:3])
                elif words[:1] == ["chain"]:
                    chain = words[1]
                elif "hook forward" in line and "policy drop" in line:
                    out["forward_drop_chains"].append(f"{table} {chain}")
    return out


# ---- host settings the rules rely on --------------------------------------------------------

def read_sysctl(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as err:
        raise KernelError(f"cannot set {path} to {value}: {err.strerror}") from None


def hairpin_off(ifnames: list[str]) -> list[str]:
    """Bridge ports among ifnames whose hairpin mode is off (read from sysfs, cheap). An interface
    that is gone or no bridge port has nothing to turn on: doctor reports it as such."""
    off = []
    for name in ifnames:
        if read_sysctl(f"/sys/class/net/{name}/brport/hairpin_mode") == "0":
            off.append(name)
    return off


def set_hairpin(ifnames: list[str]) -> None:
    """hairpin_mode on for bridge ports, so that a container can reach its own published port via
    the host. The only code that sets it (ops.HairpinOn runs it)."""
    if not ifnames:
        return
    from netkit.kernel import links

    links.set_hairpin(ifnames)


_BACKEND: IptablesLegacy | None = None


def backend() -> IptablesLegacy:
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = IptablesLegacy()
    return _BACKEND
