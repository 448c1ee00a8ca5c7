"""Delete iptables-nft rules by their nf_tables handle, in-process, without reading the chain.

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
or error nothing is changed and the caller deletes by rule text as before.

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
from netkit.rules import CHAIN_USER, PREFIX

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFNL_BATCH_GENID = 1
NFT_MSG_DELTABLE, NFT_MSG_DELCHAIN, NFT_MSG_NEWRULE, NFT_MSG_DELRULE = 2, 5, 6, 8
NFT_MSG_NEWGEN, NFT_MSG_GETGEN = 15, 16
NFT_MSG_DESTROYTABLE, NFT_MSG_DESTROYCHAIN, NFT_MSG_DESTROYRULE = 26, 27, 28
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE = 1, 2, 3
NFTA_GEN_ID, NFTA_GEN_PROC_NAME = 1, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR, NLMSG_OVERRUN = 2, 4
FAMILY = socket.AF_INET  # iptables-nft's tables are `ip` ones
EVENT_BUFFER = 8 << 20  # a full sync of 10 000 rules fits; an overflow only empties the map
TIMEOUT = 2.0


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

    def delete(self, victims: list[tuple[str, str, int]]) -> bool:
        """One transaction deleting (table, chain, handle) rules, refused by the kernel if the
        ruleset changed since generation `self.generation`. True when committed."""
        if self.generation is None:
            return False
        begin = self._next_seq()
        parts = [_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, begin, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES,
                          _attr(NFNL_BATCH_GENID, struct.pack("!I", self.generation)))]
        waiting = set()
        for table, chain, handle in victims:
            seq = self._next_seq()
            waiting.add(seq)
            parts.append(_message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELRULE, NLM_F_REQUEST | NLM_F_ACK, seq,
                                  FAMILY, 0, _attr(NFTA_RULE_TABLE, table.encode() + b"\0")
                                  + _attr(NFTA_RULE_CHAIN, chain.encode() + b"\0")
                                  + _attr(NFTA_RULE_HANDLE, struct.pack("!Q", handle))))
        parts.append(_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, self._next_seq(), socket.AF_UNSPEC,
                              NFNL_SUBSYS_NFTABLES, b""))
        self.requests.send(b"".join(parts))
        ok = True
        while waiting:
            data = self.requests.recv(65536)
            for kind, mseq, _, body in nlmsg.messages(data):
                if kind != NLMSG_ERROR:
                    continue
                code = -struct.unpack_from("=i", body)[0]
                if mseq == begin:  # the whole batch refused (ERESTART: the generation moved);
                    self.generation = None  # the next NEWGEN event says which it is now
                    return False
                if mseq in waiting:
                    waiting.discard(mseq)
                    ok = ok and code == 0
        return ok


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


def delete(ops) -> bool:
    """Delete rules (rules.Op with action D, all of them) by their handles in one transaction.
    False, having changed nothing, when one is not known or the kernel refuses (anything changed
    since the events last read, a rule gone): then delete them by text.

    Only in netkit's own chains (not NETKIT-USER, the user's), and only a rule known once: `iptables -D` deletes the first of
    identical rules, and which one is first is not known without reading the chain (a built-in
    chain may hold someone else's copy of a hook)."""
    if not ops or any(op.action != "D" or not op.chain.startswith(PREFIX) or op.chain == CHAIN_USER for op in ops):
        return False
    if len({(op.table, op.chain, op.spec) for op in ops}) != len(ops):
        return False
    with _lock:
        tracker = _tracker(create=False)
        if tracker is None:
            return False
        try:
            tracker.drain()
            victims = []
            for op in ops:
                handles = tracker.by_rule.get((op.table, op.chain, op.spec), [])
                if len(handles) != 1:
                    return False
                victims.append((op.table, op.chain, handles[0]))
            if not tracker.delete(victims):
                return False
            for table, chain, handle in victims:  # the DELRULE events would say the same
                tracker._forget(table, chain, handle)
            return True
        except OSError:
            tracker.forget_all()
            return False
