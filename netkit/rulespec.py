"""netkit's iptables rule specs as structured values, and back to the very same text.

rules.py speaks iptables-save text (`-s 172.20.0.0/24 ! -o br-app -j MASQUERADE`) because the
legacy and iptables-nft backends take and give that text. A backend with another syntax (native
nftables) needs the meaning instead: `Spec` holds it field by field. The grammar is the small
closed one rules.py writes; `parse` reads it token by token and refuses anything else with a
ValueError (so a new kind of rule fails loudly instead of being half-translated), and
`Spec.text()` prints it back in iptables-save's order, byte-identical to what rules.py made
(a unit test checks the round trip over whole rule plans).

Pure: no kernel, no imports beyond the standard library.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PROTOS = ("tcp", "udp", "sctp")
VERDICTS = ("ACCEPT", "DROP", "RETURN")


@dataclass(frozen=True)
class Addr:
    """An address match: `-s 10.0.0.0/8`, `! -d 1.2.3.4/32`."""

    cidr: str
    neg: bool = False


@dataclass(frozen=True)
class Iface:
    name: str
    neg: bool = False


@dataclass(frozen=True)
class Spec:
    """One rule of netkit's: matches in iptables-save order, then the target.

    `target` is ACCEPT, DROP, RETURN, MASQUERADE, DNAT (with `to`: "IP:PORT") or a chain name
    (a jump, or a goto when `goto`)."""

    target: str
    src: Addr | None = None
    dst: Addr | None = None
    iif: Iface | None = None
    oif: Iface | None = None
    proto: str | None = None
    sport: str | None = None  # "80" or "8000:8010" (iptables' range form)
    dport: str | None = None
    dst_type: str | None = None  # -m addrtype --dst-type (LOCAL)
    ctstate: tuple[str, ...] = field(default=())  # -m conntrack --ctstate, as written (RELATED,ESTABLISHED)
    to: str | None = None  # DNAT --to-destination
    goto: bool = False

    def text(self) -> str:
        words: list[str] = []
        for flag, addr in (("-s", self.src), ("-d", self.dst)):
            if addr is not None:
                words += (["!"] if addr.neg else []) + [flag, addr.cidr]
        for flag, iface in (("-i", self.iif), ("-o", self.oif)):
            if iface is not None:
                words += (["!"] if iface.neg else []) + [flag, iface.name]
        if self.proto:
            words += ["-p", self.proto]
            if self.sport or self.dport:
                words += ["-m", self.proto]
                if self.sport:
                    words += ["--sport", self.sport]
                if self.dport:
                    words += ["--dport", self.dport]
        if self.dst_type:
            words += ["-m", "addrtype", "--dst-type", self.dst_type]
        if self.ctstate:
            words += ["-m", "conntrack", "--ctstate", ",".join(self.ctstate)]
        words += ["-g" if self.goto else "-j", self.target]
        if self.target == "DNAT":
            words += ["--to-destination", self.to or ""]
        return " ".join(words)

    def is_jump(self) -> bool:
        return self.target not in VERDICTS + ("MASQUERADE", "DNAT")


def host_cidr(ip: str) -> str:
    """iptables-save prints a single address as /32."""
    return ip if "/" in ip else f"{ip}/32"


def parse(text: str) -> Spec:
    """iptables-save text of a netkit rule -> Spec. ValueError for anything outside the grammar."""
    tokens = text.split()
    fields: dict = {}
    i, neg = 0, False
    module = None  # the -m whose --options follow

    def value(k: int) -> str:
        if k >= len(tokens):
            raise ValueError(f"rule {text!r}: {tokens[k - 1]} needs a value")
        return tokens[k]

    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            if neg:
                raise ValueError(f"rule {text!r}: '!' twice")
            neg = True
            i += 1
            continue
        if tok in ("-s", "-d"):
            fields["src" if tok == "-s" else "dst"] = Addr(value(i + 1), neg)
            i += 2
        elif tok in ("-i", "-o"):
            fields["iif" if tok == "-i" else "oif"] = Iface(value(i + 1), neg)
            i += 2
        elif neg:
            raise ValueError(f"rule {text!r}: netkit negates only -s -d -i -o, not {tok!r}")
        elif tok == "-p":
            proto = value(i + 1)
            if proto not in PROTOS:
                raise ValueError(f"rule {text!r}: protocol {proto!r} is not one netkit writes")
            fields["proto"] = proto
            i += 2
        elif tok == "-m":
            module = value(i + 1)
            if module not in PROTOS + ("addrtype", "conntrack") or (module in PROTOS and module != fields.get("proto")):
                raise ValueError(f"rule {text!r}: match {module!r} is not one netkit writes")
            i += 2
        elif tok in ("--sport", "--dport") and module in PROTOS:
            fields[tok[2:]] = value(i + 1)
            i += 2
        elif tok == "--dst-type" and module == "addrtype":
            fields["dst_type"] = value(i + 1)
            i += 2
        elif tok == "--ctstate" and module == "conntrack":
            fields["ctstate"] = tuple(value(i + 1).split(","))
            i += 2
        elif tok in ("-j", "-g"):
            fields["target"] = value(i + 1)
            fields["goto"] = tok == "-g"
            module = "target"
            i += 2
        elif tok == "--to-destination" and fields.get("target") == "DNAT":
            fields["to"] = value(i + 1)
            i += 2
        else:
            raise ValueError(f"rule {text!r}: unexpected {tok!r}")
        neg = False
    if "target" not in fields:
        raise ValueError(f"rule {text!r}: no -j target")
    if fields["target"] == "DNAT" and not fields.get("to"):
        raise ValueError(f"rule {text!r}: DNAT without --to-destination")
    return Spec(**fields)
