"""iptables-nft rules changed in-process: deleted by their nf_tables handle, and native ones
(nftexpr.py) appended, one nf_tables transaction per change (`change`), no iptables-nft process.

`iptables-nft-restore -D RULE` finds the rule by its text: it dumps the whole chain and turns every
rule back into iptables terms to compare (70-80 ms with 10 000 rules, and its process exit then
waits for the kernel's release of what it deleted: nf_tables frees deleted objects after an RCU
grace period, and closing a NETLINK_NETFILTER socket waits for that). A rule netkit added itself
can be deleted by its handle instead: one nf_tables transaction of DELRULE messages sent on a
netlink socket this process keeps open.

The handles come from nf_tables' own notifications: a socket of this process listens to the
NFNLGRP_NFTABLES group; each committed transaction arrives as its objects' events followed by a
NEWGEN event naming the generation and the program that committed it, every message carrying the
committer's netlink port id. libmnl binds a process's first netlink socket to the process's pid
(as seen in its own PID namespace: the pid Popen gives), so the NEWRULE events of the transaction
the `iptables-nft-restore` netkit just ran committed carry that pid (and "iptables-nft-restore"
as the program): chain by chain and in order, they are the rules it appended or inserted, which
maps netkit's rule text to a handle. (The NEWGEN's own pid field is no help: it is the pid in the
initial PID namespace, which a sandboxed netkit cannot see.) A child whose socket got another port
id teaches nothing; its rules are then deleted by text. Every
DELRULE, DELCHAIN or DELTABLE event, whoever sent it, forgets the handles it removed; lost
events (the socket's buffer overflowed) forget everything.

Safety: the delete batch carries the last generation seen in the events (NFNL_BATCH_GENID); the
kernel refuses the whole batch (ERESTART) if anyone committed anything since, so a handle is only
used when the map is exactly up to date. Handles are never reused within a table. On any refusal
or error nothing is changed and the caller deletes by rule text as before; only a batch sent
whose replies never came (applied or not: unknown) is an error, never retried another way.

Native rules (the per-container raw DROP): appended by NEWRULE messages carrying the very
attributes iptables-nft sends (nftexpr.py), with NLM_F_ECHO so the kernel's echo names each new
handle, remembered like a learnt one. A native rule whose handle this process does not know (a
fresh netkitd child, CNI DEL, `netkit rm`) is found by one GETRULE dump of its chain, matched by
its expressions; the generation asked before the dump guards the DELRULE batch the same way.

The sockets are kept open, one pair per process and network namespace, like conntrack.py's.
"""
from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from collections import defaultdict

from netkit.kernel import nlmsg
from netkit.kernel.fw import nftexpr
from netkit.rules import CHAIN_USER, PREFIX

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFNL_BATCH_GENID = 1
NFT_MSG_DELTABLE, NFT_MSG_DELCHAIN, NFT_MSG_NEWRULE, NFT_MSG_GETRULE, NFT_MSG_DELRULE = 2, 5, 6, 7, 8
NFT_MSG_NEWGEN, NFT_MSG_GETGEN = 15, 16
NFT_MSG_DESTROYTABLE, NFT_MSG_DESTROYCHAIN, NFT_MSG_DESTROYRULE = 26, 27, 28
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE = 1, 2, 3
NFTA_GEN_ID, NFTA_GEN_PROC_NAME = 1, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO = 0x1, 0x4, 0x8
NLM_F_DUMP, NLM_F_CREATE, NLM_F_APPEND = 0x300, 0x400, 0x800
NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 2, 3, 4
FAMILY = socket.AF_INET  # iptables-nft's tables are `ip` ones
EVENT_BUFFER = 8 << 20  # a full sync of 10 000 rules fits; an overflow only empties the map
TIMEOUT = 2.0
# Changes made in-process hold at most this many rules: a per-container change is 1-2 of them; a
# bigger one (a full sync) goes through iptables-nft-restore, and the replies of a batch this size
# (an echo of ~350 bytes and an ack per rule) fit REQUEST_BUFFER many times over.
NATIVE_MAX = 128
REQUEST_BUFFER = 1 << 20


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _attrs(data: bytes, start: int = 0) -> dict[int, bytes]:
    out, i = {}, start
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[i + 4:i + length]
        i += (length + 3) & ~3
    return out


def _text(value: bytes | None) -> str:
    return (value or b"").split(b"\0", 1)[0].decode()


def _message(kind: int, flags: int, seq: int, family: int, res_id: int, attrs: bytes) -> bytes:
    body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


class Unanswered(OSError):
    """A batch was sent and its replies did not come (TIMEOUT, or lost): applied or not is unknown, so
    it must not be applied again another way."""


class _Tracker:
    """The handle map of one network namespace, fed by the events socket."""

    def __init__(self):
        self.events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_NETFILTER)
        try:
            self.events.setsockopt(socket.SOL_SOCKET, 33, EVENT_BUFFER)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, EVENT_BUFFER)
        self.events.bind((0, 0))
        self.events.setsockopt(SOL_NETLINK, 1, NFNLGRP_NFTABLES)  # NETLINK_ADD_MEMBERSHIP
        self.requests = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:  # the replies of a batch of NATIVE_MAX appends (echo + ack each) must fit
            self.requests.setsockopt(socket.SOL_SOCKET, 33, REQUEST_BUFFER)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.requests.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, REQUEST_BUFFER)
        self.requests.bind((0, 0))
        self.requests.settimeout(TIMEOUT)
        self.seq = 0
        self.by_rule: dict[tuple[str, str, str], list[int]] = defaultdict(list)  # (table, chain, spec) -> handles
        self.by_handle: dict[tuple[str, int], tuple[str, str, str]] = {}  # (table, handle) -> key
        self.pending: list[tuple[str, str, int]] = []  # NEWRULE (table, chain, handle) of the transaction being read
        self.committed_by: dict[int, list[tuple[str, str, int]]] = defaultdict(list)  # portid -> its NEWRULEs
        # Subscribed first, then asked: a commit in between arrives as an event, never missed.
        self.generation: int | None = self._ask_generation()

    def close(self) -> None:
        self.events.close()
        self.requests.close()

    # ---- the map -------------------------------------------------------------------------
    def forget_all(self) -> None:
        self.by_rule.clear()
        self.by_handle.clear()
        self.pending.clear()
        self.committed_by.clear()

    def _forget(self, table: str, chain: str | None = None, handle: int | None = None) -> None:
        if handle is not None:  # one rule (per DELRULE event: a flush of 10 000 rules sends 10 000)
            doomed = [(table, handle)] if (table, handle) in self.by_handle else []
        else:
            doomed = [(t, h) for (t, h), key in self.by_handle.items()
                      if t == table and (chain is None or key[1] == chain)]
        for t, h in doomed:
            key = self.by_handle.pop((t, h))
            handles = self.by_rule.get(key)
            if handles and h in handles:
                handles.remove(h)
                if not handles:
                    del self.by_rule[key]

    def remember(self, table: str, chain: str, spec: str, handle: int) -> None:
        self.by_rule[(table, chain, spec)].append(handle)
        self.by_handle[(table, handle)] = (table, chain, spec)

    # ---- events --------------------------------------------------------------------------
    def drain(self) -> None:
        """Read every event waiting: apply deletions, group NEWRULE events by committing port id."""
        while True:
            try:
                data = self.events.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno == errno.ENOBUFS:  # events were lost: nothing known is sure any more
                    self.forget_all()
                    self.generation = None
                    continue
                raise
            for kind, _, portid, payload in nlmsg.messages(data):
                self._event(kind, portid, payload)

    def _event(self, kind: int, portid: int, payload: bytes) -> None:
        if kind >> 8 != NFNL_SUBSYS_NFTABLES or len(payload) < 4:
            return
        msg, family = kind & 0xFF, payload[0]
        attrs = _attrs(payload, 4)
        if msg == NFT_MSG_NEWGEN:
            gen = attrs.get(NFTA_GEN_ID)
            if gen is not None:
                self.generation = struct.unpack("!I", gen)[0]
            if _text(attrs.get(NFTA_GEN_PROC_NAME)).startswith("iptables"):
                self.committed_by[portid].extend(self.pending)
            self.pending.clear()
            return
        if family != FAMILY:
            return
        if msg in (NFT_MSG_DELTABLE, NFT_MSG_DESTROYTABLE):
            self._forget(_text(attrs.get(NFTA_TABLE_NAME)))
        elif msg in (NFT_MSG_DELCHAIN, NFT_MSG_DESTROYCHAIN):
            self._forget(_text(attrs.get(NFTA_CHAIN_TABLE)), _text(attrs.get(NFTA_CHAIN_NAME)))
        elif msg in (NFT_MSG_NEWRULE, NFT_MSG_DELRULE, NFT_MSG_DESTROYRULE):
            handle = attrs.get(NFTA_RULE_HANDLE)
            if handle is None:
                return
            table, chain, number = _text(attrs.get(NFTA_RULE_TABLE)), _text(attrs.get(NFTA_RULE_CHAIN)), \
                struct.unpack("!Q", handle)[0]
            if msg == NFT_MSG_NEWRULE:
                self.pending.append((table, chain, number))
            else:
                self._forget(table, chain, number)

    # ---- requests ------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        return self.seq

    def _ask_generation(self) -> int | None:
        seq = self._next_seq()
        self.requests.send(_message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, NLM_F_REQUEST, seq,
                                    socket.AF_UNSPEC, 0, b""))
        while True:
            data = self.requests.recv(65536)
            for kind, mseq, _, body in nlmsg.messages(data):
                if mseq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    return None
                gen = _attrs(body, 4).get(NFTA_GEN_ID)
                return struct.unpack("!I", gen)[0] if gen else None

    def ask_generation(self) -> int | None:
        return self._ask_generation()

    def delete(self, victims: list[tuple[str, str, int]]) -> bool:
        """One transaction deleting (table, chain, handle) rules, refused by the kernel if the
        ruleset changed since generation `self.generation`. True when committed."""
        if self.generation is None:
            return False
        steps = [("D", table, chain, handle) for table, chain, handle in victims]
        return self.commit(steps, self.generation) is not None

    def commit(self, steps: list[tuple], generation: int | None) -> list[int | None] | None:
        """One nf_tables transaction of `steps`, in order: ("D", table, chain, handle) deletes a rule,
        ("A", table, chain, attrs) appends one (attrs: nftexpr.rule_attrs). With `generation`, the
        kernel refuses the whole batch if anyone committed since (NFNL_BATCH_GENID). The handles of
        the appended rules in order (their NEWRULE echoes), or None when refused or failed: then the
        kernel changed nothing (a batch is all or nothing)."""
        begin = self._next_seq()
        genid = _attr(NFNL_BATCH_GENID, struct.pack("!I", generation)) if generation is not None else b""
        parts = [_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, begin, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, genid)]
        waiting, appended = set(), []
        for action, table, chain, what in steps:
            seq = self._next_seq()
            waiting.add(seq)
            if action == "D":
                parts.append(_message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELRULE, NLM_F_REQUEST | NLM_F_ACK, seq,
                                      FAMILY, 0, _attr(NFTA_RULE_TABLE, table.encode() + b"\0")
                                      + _attr(NFTA_RULE_CHAIN, chain.encode() + b"\0")
                                      + _attr(NFTA_RULE_HANDLE, struct.pack("!Q", what))))
            else:  # as iptables-nft appends (NLM_F_CREATE|NLM_F_APPEND), plus an ack and an echo for the handle
                appended.append(seq)
                parts.append(_message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE,
                                      NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO | NLM_F_CREATE | NLM_F_APPEND, seq,
                                      FAMILY, 0, what))
        parts.append(_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, self._next_seq(), socket.AF_UNSPEC,
                              NFNL_SUBSYS_NFTABLES, b""))
        self.requests.send(b"".join(parts))
        handles: dict[int, int] = {}
        while waiting:
            try:
                data = self.requests.recv(1 << 16)
            except OSError as err:  # sent, unanswered (timeout, or lost replies): committed or not is unknown
                raise Unanswered(str(err)) from None
            for kind, mseq, _, body in nlmsg.messages(data):
                if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE and mseq in waiting:
                    handle = _attrs(body, 4).get(NFTA_RULE_HANDLE)
                    if handle is not None:
                        handles[mseq] = struct.unpack("!Q", handle)[0]
                    continue
                if kind != NLMSG_ERROR:
                    continue
                code = -struct.unpack_from("=i", body)[0]
                if mseq == begin:  # the whole batch refused (ERESTART: the generation moved);
                    self.generation = None  # the next NEWGEN event says which it is now
                    return None
                if mseq in waiting:
                    waiting.discard(mseq)
                    if code != 0:  # the kernel aborted the whole transaction; later replies are dropped by seq
                        return None
        return [handles.get(seq) for seq in appended]

    def dump(self, table: str, chain: str, keep=None) -> list[tuple[int, dict[int, bytes]]] | None:
        """Every rule of one chain (those whose raw message `keep` accepts, when given: decoding
        1000 rules costs more than the kernel's dump): (handle, its NFTA_RULE_* attributes); None
        when there is no such chain (or the dump failed)."""
        seq = self._next_seq()
        self.requests.send(_message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE, NLM_F_REQUEST | NLM_F_DUMP, seq,
                                    FAMILY, 0, _attr(NFTA_RULE_TABLE, table.encode() + b"\0")
                                    + _attr(NFTA_RULE_CHAIN, chain.encode() + b"\0")))
        out = []
        while True:
            data = self.requests.recv(1 << 20)
            for kind, mseq, _, body in nlmsg.messages(data):
                if mseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    return None
                if keep is not None and not keep(body):
                    continue
                fields = _attrs(body, 4)
                handle = fields.get(NFTA_RULE_HANDLE)
                if handle is not None and _text(fields.get(NFTA_RULE_CHAIN)) == chain:
                    out.append((struct.unpack("!Q", handle)[0], fields))


_trackers: dict[tuple[int, int], _Tracker] = {}
_TRACKERS_MAX = 8
_lock = threading.RLock()


def _tracker(create: bool) -> _Tracker | None:
    # One per process and netns: a netlink socket speaks for the netns it was made in; a forked
    # child must not read its parent's events.
    key = (os.getpid(), os.stat("/proc/thread-self/ns/net").st_ino)
    tracker = _trackers.get(key)
    if tracker is None and create:
        while len(_trackers) >= _TRACKERS_MAX:
            _trackers.pop(next(iter(_trackers))).close()
        tracker = _trackers[key] = _Tracker()
    return tracker


def listen() -> None:
    """Start following nf_tables events in this netns (before a restore whose rules to learn)."""
    with _lock:
        try:
            tracker = _tracker(create=True)
            # Read what came before: a port id is reused after its holder exits, so only the events
            # of the coming restore may be attributed to its pid.
            tracker.drain()
            tracker.committed_by.clear()
        except OSError:
            pass  # no events, no handles: deletes go by rule text


def learn(pid: int, ops) -> None:
    """After `iptables-nft-restore` (process `pid`, its netlink port id) applied `ops` (rules.Op):
    remember the handle of each rule it added. Chain by chain, its NEWRULE events are its A/I ops in
    order; a chain whose counts differ teaches nothing."""
    with _lock:
        tracker = _tracker(create=False)
        if tracker is None:
            return
        try:
            tracker.drain()
        except OSError:
            tracker.forget_all()
            return
        added = tracker.committed_by.pop(pid, [])
        tracker.committed_by.clear()  # other programs' additions are not ours to name
        events: dict[tuple[str, str], list[int]] = defaultdict(list)
        for table, chain, handle in added:
            events[(table, chain)].append(handle)
        wanted: dict[tuple[str, str], list[str]] = defaultdict(list)
        for op in ops:
            if op.action in ("A", "I"):
                wanted[(op.table, op.chain)].append(op.spec)
        for key, specs in wanted.items():
            handles = events.get(key, [])
            if len(handles) == len(specs):
                for spec, handle in zip(specs, handles):
                    tracker.remember(key[0], key[1], spec, handle)


def _ours(op) -> bool:
    """netkit's own chains, not NETKIT-USER (the user's): the only ones changed in-process."""
    return op.chain.startswith(PREFIX) and op.chain != CHAIN_USER


def change(ops) -> bool:
    """Apply a change of rule appends and deletes (rules.Op with action A or D) in this process,
    as one nf_tables transaction: the appended rules as iptables-nft would encode them
    (nftexpr.py), their handles learnt from the kernel's echo; the deleted ones by handle. False,
    having changed nothing, when it cannot: then iptables-nft-restore applies the change.

    A rule to delete is found by the handle this process learnt (from its own appends or the
    events of its restores), else, when its spec is a native one, by reading its chain (one
    NFT_MSG_GETRULE dump) and comparing expressions. Either way the batch carries the generation
    the handles are valid in, and the kernel refuses it if anything was committed since.

    Only in netkit's own chains, and a rule to delete must be there once: `iptables -D` deletes
    the first of identical rules, and which one is first is not known without reading the chain (a
    built-in chain may hold someone else's copy of a hook); identical duplicates go by text."""
    if not ops or len(ops) > NATIVE_MAX or any(op.action not in ("A", "D") or not _ours(op) for op in ops):
        return False
    deletes = [op for op in ops if op.action == "D"]
    if len({(op.table, op.chain, op.spec) for op in deletes}) != len(deletes):
        return False
    attrs = {}
    for op in ops:
        if op.action == "A":
            attrs[op] = nftexpr.rule_attrs(op.table, op.chain, op.spec)
            if attrs[op] is None:
                return False
    with _lock:
        # A rule only iptables-nft can encode is deleted here only by a handle already known.
        may_look_up = all(nftexpr.native(op.spec) for op in deletes)
        tracker = _tracker(create=may_look_up)
        if tracker is None:
            return False
        try:
            tracker.drain()
            handles, generation = _known(tracker, deletes)
            if handles is None:
                if not may_look_up:
                    return False
                handles, generation = _look_up(tracker, deletes)
                if handles is None:
                    return False
            steps = [("D", op.table, op.chain, handles[op]) if op.action == "D"
                     else ("A", op.table, op.chain, attrs[op]) for op in ops]
            added = tracker.commit(steps, generation)
            if added is None:
                return False
            for op in deletes:  # the DELRULE events would say the same
                tracker._forget(op.table, op.chain, handles[op])
            for op, handle in zip([op for op in ops if op.action == "A"], added):
                if handle is not None:
                    tracker.remember(op.table, op.chain, op.spec, handle)
            return True
        except Unanswered as err:
            tracker.forget_all()
            from netkit.errors import KernelError
            raise KernelError(f"nf_tables' answer was lost ({err}) while applying `{ops[0].text()}` "
                              f"(and {len(ops) - 1} more); whether it was applied is unknown: `netkit doctor --fix` "
                              "syncs the rules with the state") from None
        except OSError:
            tracker.forget_all()
            return False


def _known(tracker: _Tracker, deletes) -> tuple[dict | None, int | None]:
    """Handles of the rules to delete from what this process learnt, valid in the generation of
    the last event read; (None, None) when one is not known once."""
    if not deletes:
        return {}, None
    if tracker.generation is None:
        return None, None
    handles = {}
    for op in deletes:
        known = tracker.by_rule.get((op.table, op.chain, op.spec), [])
        if len(known) != 1:
            return None, None
        handles[op] = known[0]
    return handles, tracker.generation


def _look_up(tracker: _Tracker, deletes) -> tuple[dict | None, int | None]:
    """Handles of the rules to delete found by reading their chains: asked for the generation
    first, so that a change made during or after the dump makes the kernel refuse the delete."""
    generation = tracker.ask_generation()
    if generation is None:
        return None, None
    handles: dict = {}
    by_chain: dict[tuple[str, str], list] = defaultdict(list)
    for op in deletes:
        by_chain[(op.table, op.chain)].append(op)
    for (table, chain), wanted in by_chain.items():
        # A rule lacking one of a spec's compared values (address, interface name) is not that
        # spec: a bytes test cheaper than decoding it.
        needles = {op: nftexpr.values(op.spec) for op in wanted}
        listing = tracker.dump(table, chain, keep=lambda body: any(all(n in body for n in group)
                                                                     for group in needles.values()))
        if listing is None:
            return None, None
        for op in wanted:
            signature = nftexpr.spec_signature(op.spec)
            matches = [handle for handle, fields in listing
                       if nftexpr.NFTA_RULE_USERDATA not in fields
                       and all(n in fields.get(nftexpr.NFTA_RULE_EXPRESSIONS, b"") for n in needles[op])
                       and nftexpr.signature(fields.get(nftexpr.NFTA_RULE_EXPRESSIONS, b"")) == signature]
            if len(matches) != 1:
                return None, None
            handles[op] = matches[0]
    if len(set(handles.values())) != len(handles):
        return None, None
    return handles, generation
