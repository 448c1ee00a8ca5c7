"""The nf_tables encoding iptables-nft 1.8.9 gives the simplest iptables rules, built and read here.

A rule made only of `[!] -s/-d ADDR/32`, `[!] -i/-o NAME` and `-j DROP|ACCEPT|RETURN` is, in
iptables-nft, a list of native nf_tables expressions: no xtables match or target, no userdata.
netkit adds such rules itself (nfthandles.py sends them in one NEWRULE batch) instead of starting
an `iptables-nft-restore`, so they must be the very bytes iptables-nft would have sent; then
`iptables-nft-save`, `iptables -D` by text and `nft list` cannot tell who wrote them. The
encoding below was read off the NEWRULE message `iptables-nft -A` sends (strace) for
`-A NETKIT-RAW -d 10.220.0.5/32 ! -i nk-cni0 -j DROP`:

    meta load iifname => reg 1;  cmp neq reg 1 "nk-cni0\\0"   (name + NUL, exact match)
    payload load 4b @ network header + 16 => reg 1;  cmp eq reg 1 10.220.0.5
    counter 0 0;  immediate reg 0 drop

in iptables-nft's order (interfaces in, out; then source, destination; counter; verdict), each
expression's attributes in libnftnl's order, and the rule's NFTA_RULE_COMPAT (protocol 0, flags 0)
that iptables-nft adds to every rule (the kernel keeps no trace of it).

Reading: `signature` turns a dumped rule's expressions into a comparable value (attribute order
and counter values ignored) so a rule can be found in a chain by meaning (nfthandles' lookup).
Anything else (masks other than /32, `+` wildcards, -p, -m, jumps) is not encoded: None, and the
caller goes through iptables-nft-restore.
"""
from __future__ import annotations

import ipaddress
import struct

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
NFTA_LIST_ELEM = 1
NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 2
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE, NFTA_RULE_EXPRESSIONS, NFTA_RULE_COMPAT = 1, 2, 3, 4, 5
NFTA_RULE_USERDATA = 7
NFTA_RULE_COMPAT_PROTO, NFTA_RULE_COMPAT_FLAGS = 1, 2
NFTA_META_DREG, NFTA_META_KEY = 1, 2
NFT_META_IIFNAME, NFT_META_OIFNAME = 6, 7
NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA = 1, 2, 3
NFT_CMP_EQ, NFT_CMP_NEQ = 0, 1
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE = 1
NFTA_PAYLOAD_DREG, NFTA_PAYLOAD_BASE, NFTA_PAYLOAD_OFFSET, NFTA_PAYLOAD_LEN = 1, 2, 3, 4
NFT_PAYLOAD_NETWORK_HEADER = 1
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA = 1, 2
NFT_REG_VERDICT, NFT_REG_1 = 0, 1
VERDICTS = {"DROP": 0, "ACCEPT": 1, "RETURN": -5}  # NF_DROP, NF_ACCEPT, NFT_RETURN
IFNAMSIZ = 16
SADDR_OFFSET, DADDR_OFFSET = 12, 16  # offsetof(struct iphdr, saddr / daddr)


def attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind | (NLA_F_NESTED if nested else 0)) + payload \
        + b"\0" * ((4 - length % 4) % 4)


def _u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("!I", value & 0xFFFFFFFF))


def _expr(name: str, data: bytes) -> bytes:
    return attr(NFTA_LIST_ELEM, attr(NFTA_EXPR_NAME, name.encode() + b"\0") + attr(NFTA_EXPR_DATA, data, True), True)


def _cmp(op: int, value: bytes) -> bytes:
    return _expr("cmp", _u32(NFTA_CMP_SREG, NFT_REG_1) + _u32(NFTA_CMP_OP, op)
                 + attr(NFTA_CMP_DATA, attr(NFTA_DATA_VALUE, value), True))


def _interface(key: int, name: str, op: int) -> bytes:
    return _expr("meta", _u32(NFTA_META_KEY, key) + _u32(NFTA_META_DREG, NFT_REG_1)) \
        + _cmp(op, name.encode() + b"\0")


def _address(offset: int, ip: bytes, op: int) -> bytes:
    return _expr("payload", _u32(NFTA_PAYLOAD_DREG, NFT_REG_1) + _u32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER)
                 + _u32(NFTA_PAYLOAD_OFFSET, offset) + _u32(NFTA_PAYLOAD_LEN, 4)) + _cmp(op, ip)


def _counter() -> bytes:
    return _expr("counter", attr(NFTA_COUNTER_BYTES, bytes(8)) + attr(NFTA_COUNTER_PACKETS, bytes(8)))


def _verdict(code: int) -> bytes:
    return _expr("immediate", _u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
                 + attr(NFTA_IMMEDIATE_DATA, attr(NFTA_DATA_VERDICT, _u32(NFTA_VERDICT_CODE, code), True), True))


def _parse_spec(spec: str) -> dict | None:
    """{"-s"/"-d": (packed ip, negated), "-i"/"-o": (name, negated), "-j": code}, or None when the
    spec holds anything but those (each at most once, -j last)."""
    words = spec.split()
    found: dict = {}
    i, negate = 0, False
    while i < len(words):
        word = words[i]
        if word == "!" and not negate:
            negate, i = True, i + 1
            continue
        if word not in ("-s", "-d", "-i", "-o", "-j") or word in found or i + 1 >= len(words):
            return None
        value = words[i + 1]
        if word == "-j":
            if negate or value not in VERDICTS or i + 2 != len(words):
                return None
            found[word] = VERDICTS[value]
        elif word in ("-s", "-d"):
            addr, slash, bits = value.partition("/")
            try:
                packed = ipaddress.IPv4Address(addr).packed
            except ValueError:
                return None
            if slash != "/" or bits != "32":
                return None
            found[word] = (packed, negate)
        else:
            if not value or len(value) >= IFNAMSIZ or "+" in value or "\0" in value:
                return None
            found[word] = (value, negate)
        negate, i = False, i + 2
    return found if "-j" in found and not negate else None


def expressions(spec: str) -> bytes | None:
    """The NFTA_RULE_EXPRESSIONS payload iptables-nft 1.8.9 sends for `spec` (iptables-save text
    after `-A CHAIN`), or None when the rule is not one of the native forms above."""
    parts = _parse_spec(spec)
    if parts is None:
        return None
    out = b""
    for option, key in (("-i", NFT_META_IIFNAME), ("-o", NFT_META_OIFNAME)):
        if option in parts:
            name, negated = parts[option]
            out += _interface(key, name, NFT_CMP_NEQ if negated else NFT_CMP_EQ)
    for option, offset in (("-s", SADDR_OFFSET), ("-d", DADDR_OFFSET)):
        if option in parts:
            packed, negated = parts[option]
            out += _address(offset, packed, NFT_CMP_NEQ if negated else NFT_CMP_EQ)
    return out + _counter() + _verdict(parts["-j"])


def native(spec: str) -> bool:
    return _parse_spec(spec) is not None


def rule_attrs(table: str, chain: str, spec: str) -> bytes | None:
    """A NEWRULE message's attributes for appending `spec` to table/chain, as iptables-nft sends
    them (table, chain, expressions, compat), or None (not native)."""
    exprs = expressions(spec)
    if exprs is None:
        return None
    compat = _u32(NFTA_RULE_COMPAT_PROTO, 0) + _u32(NFTA_RULE_COMPAT_FLAGS, 0)
    return (attr(NFTA_RULE_TABLE, table.encode() + b"\0") + attr(NFTA_RULE_CHAIN, chain.encode() + b"\0")
            + attr(NFTA_RULE_EXPRESSIONS, exprs, True) + attr(NFTA_RULE_COMPAT, compat, True))


# ---- reading ------------------------------------------------------------------------------------
def attributes(data: bytes) -> list[tuple[int, bytes]]:
    """(type without flags, payload) of each attribute in `data`, in order."""
    out, i = [], 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        out.append((kind & NLA_TYPE_MASK, data[i + 4:i + length]))
        i += (length + 3) & ~3
    return out


# Attributes that hold nested attributes, per expression: what `signature` descends into.
_NESTED = {("cmp", NFTA_CMP_DATA), ("immediate", NFTA_IMMEDIATE_DATA), ("immediate", NFTA_DATA_VERDICT)}


def _canonical(name: str, data: bytes, depth: int = 0) -> tuple:
    out = []
    for kind, value in attributes(data):
        if (name, kind) in _NESTED and depth < 2:
            out.append((kind, _canonical(name, value, depth + 1)))
        else:
            out.append((kind, value))
    return tuple(sorted(out))


def signature(exprs: bytes) -> tuple:
    """What a rule's expressions mean, comparable whatever the attribute order: (name, sorted
    attributes) per expression, in order; a counter's values are not part of it."""
    out = []
    for _, element in attributes(exprs):
        fields = dict(attributes(element))
        name = fields.get(NFTA_EXPR_NAME, b"").split(b"\0", 1)[0].decode(errors="replace")
        data = fields.get(NFTA_EXPR_DATA, b"")
        out.append((name, () if name == "counter" else _canonical(name, data)))
    return tuple(out)


def spec_signature(spec: str) -> tuple | None:
    exprs = expressions(spec)
    return None if exprs is None else signature(exprs)


def rule_fields(body: bytes) -> dict[int, bytes]:
    """A NEWRULE message's (dump or event) attributes after its nfgenmsg header."""
    return dict(attributes(body[4:]))


def values(spec: str) -> list[bytes]:
    """The compared values' attributes (interface names, addresses) as they appear in the rule's
    bytes: a rule lacking one of them is not `spec` (a test cheaper than `signature`)."""
    parts = _parse_spec(spec) or {}
    out = []
    for option in ("-i", "-o"):
        if option in parts:
            out.append(attr(NFTA_DATA_VALUE, parts[option][0].encode() + b"\0"))
    for option in ("-s", "-d"):
        if option in parts:
            out.append(attr(NFTA_DATA_VALUE, parts[option][0]))
    return out
