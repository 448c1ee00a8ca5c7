"""Parse Docker's `-p/--publish` and `--expose` syntax into plain data, and format `docker port` lines.

Pure: no kernel access beyond reading the ephemeral port range from /proc.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from netkit.errors import UserError

PROTOCOLS = ("tcp", "udp", "sctp")
PORT_MIN, PORT_MAX = 1, 65535
# Linux's default net.ipv4.ip_local_port_range, used when /proc cannot be read.
DEFAULT_EPHEMERAL = (32768, 60999)

_RANGE_RE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
# Only used on the error path, to tell a hostname from a mistyped IP; left uncompiled
# so importing stays cheap (re caches it on first use).
_HOSTNAME_PATTERN = r"(?=.*[A-Za-z])[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"

_SPEC_HELP = "use CONTAINERPORT, HOSTPORT:CONTAINERPORT or IP:HOSTPORT:CONTAINERPORT, like 80, 8088:80 or 127.0.0.1:8088:80"


@dataclass(frozen=True)
class PortSpec:
    """One parsed `-p` argument."""

    host_ip: str  # "" = not given (all IPv4 addresses, 0.0.0.0)
    host_family: int  # 4 or 6; 4 when host_ip is ""
    host_ports: tuple[int, int] | None  # inclusive; None = pick from the ephemeral range
    container_ports: tuple[int, int]  # inclusive
    proto: str  # "tcp" | "udp" | "sctp"

    def pairs(self) -> list[tuple[int | None, int]]:
        """(host_port or None, container_port) per container port, as Docker pairs them.

        None means "pick a host port": from the ephemeral range, or from `pick_range`
        when a host range was given for a single container port.
        """
        clo, chi = self.container_ports
        if self.host_ports is None or self.pick_range is not None:
            return [(None, c) for c in range(clo, chi + 1)]
        hlo = self.host_ports[0]
        return [(hlo + i, c) for i, c in enumerate(range(clo, chi + 1))]

    @property
    def pick_range(self) -> tuple[int, int] | None:
        """Host range to pick one free port from (host range with a single container port), else None."""
        if self.host_ports is None:
            return None
        hlo, hhi = self.host_ports
        clo, chi = self.container_ports
        # Equal lengths pair port by port; only a longer host range means "pick one".
        if hhi - hlo != chi - clo:
            return self.host_ports
        return None

    def __str__(self) -> str:
        cont = f"{_fmt_range(self.container_ports)}/{self.proto}"
        if self.host_ip:
            ip = f"[{self.host_ip}]" if self.host_family == 6 else self.host_ip
            host = _fmt_range(self.host_ports) if self.host_ports else ""
            return f"{ip}:{host}:{cont}"
        if self.host_ports:
            return f"{_fmt_range(self.host_ports)}:{cont}"
        return cont


def parse_port_spec(text: str) -> PortSpec:
    """Parse one `-p/--publish` value; raise UserError with one actionable line if malformed."""

    def fail(reason: str) -> UserError:
        return UserError(f"invalid port spec {text!r}: {reason}")

    if text.strip() == "":
        raise fail(f"empty; {_SPEC_HELP}")
    if any(ch.isspace() for ch in text):
        raise fail("contains whitespace; remove it, like 8088:80")

    host_ip, family = "", 4
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise fail("'[' without a closing ']'; write IPv6 addresses like [::1]:8088:80")
        ip_text, rest = text[1:close], text[close + 1 :]
        if not rest.startswith(":"):
            raise fail("expected ':' after ']'; use [IP]:HOSTPORT:CONTAINERPORT or [IP]::CONTAINERPORT, like [::1]:8088:80")
        parts = rest[1:].split(":")
        if len(parts) != 2:
            raise fail("after [IP] give HOSTPORT:CONTAINERPORT or :CONTAINERPORT, like [::1]:8088:80 or [::1]::80")
        host_ip, family = _parse_bracketed_ip(ip_text, fail)
        host_text, cont_text = parts
    elif "[" in text or "]" in text:
        raise fail("brackets go around an IPv6 address at the start, like [::1]:8088:80")
    else:
        parts = text.split(":")
        if len(parts) == 1:
            host_text, cont_text = None, parts[0]
        elif len(parts) == 2:
            host_text, cont_text = parts
            if host_text == "":
                raise fail("empty host port before ':'; write just the container port (like 80) to pick a host port, or HOSTPORT:CONTAINERPORT like 8088:80")
            if _is_ipv4(host_text):
                raise fail(f"IP {host_text} given without a host port; use IP:HOSTPORT:CONTAINERPORT like {host_text}:8088:80, or {host_text}::80 to pick a host port")
        else:
            if len(parts) == 3 and parts[0] == "":
                raise fail("empty IP before ':'; drop the leading ':' (like 8088:80) or give an IP (like 127.0.0.1:8088:80)")
            if not (len(parts) == 3 and _is_ipv4(parts[0])) and _looks_like_unbracketed_ipv6(parts):
                raise fail("IPv6 addresses must be in brackets, like [::1]:8088:80 or [::1]::80")
            if len(parts) > 3:
                raise fail(f"too many ':'; {_SPEC_HELP}")
            ip_text, host_text, cont_text = parts
            host_ip = _parse_ipv4(ip_text, fail)

    if host_text is not None and "/" in host_text:
        raise fail("the protocol goes after the container port, like 8088:80/udp")

    if cont_text == "":
        if host_text:
            raise fail("host port given but container port missing; use HOSTPORT:CONTAINERPORT like 8088:80")
        raise fail(f"container port missing; {_SPEC_HELP}")
    cont_port_text, proto = _split_proto(cont_text, fail)
    container_ports = _parse_range(cont_port_text, "container port", fail)

    host_ports = None
    if host_text:
        host_ports = _parse_range(host_text, "host port", fail)
        hlen = host_ports[1] - host_ports[0] + 1
        clen = container_ports[1] - container_ports[0] + 1
        # Docker allows unequal lengths only as "pick one host port from this range".
        if hlen != clen and clen != 1:
            if hlen == 1:
                raise fail(
                    f"single host port {host_ports[0]} for {clen} container ports {cont_port_text}; "
                    f"give a host range of the same size (like {_example_range(host_ports[0], clen)}:{cont_port_text}) or omit the host port"
                )
            raise fail(
                f"host range {host_text} has {hlen} ports but container range {cont_port_text} has {clen}; "
                "give ranges of equal size, or a single container port to pick one host port from the range"
            )

    return PortSpec(host_ip=host_ip, host_family=family, host_ports=host_ports, container_ports=container_ports, proto=proto)


def parse_expose(text: str) -> tuple[tuple[int, int], str]:
    """Parse one `--expose` value (`80`, `8000-8010/udp`) into ((lo, hi), proto)."""

    def fail(reason: str) -> UserError:
        return UserError(f"invalid expose spec {text!r}: {reason}")

    if text.strip() == "":
        raise fail("empty; give a container port or range, like 80 or 8000-8010/udp")
    if any(ch.isspace() for ch in text):
        raise fail("contains whitespace; remove it, like 80/tcp")
    if ":" in text:
        raise fail("--expose takes container ports only, like 80 or 8000-8010/udp; use -p to publish on the host")
    port_text, proto = _split_proto(text, fail)
    return _parse_range(port_text, "port", fail), proto


def format_mapping(container_port: int, proto: str, host_ip: str, host_port: int) -> str:
    """One `docker port` line: "80/tcp -> 0.0.0.0:8088", IPv6 as "80/tcp -> [::1]:8088"."""
    ip = host_ip or "0.0.0.0"
    if ":" in ip:
        ip = f"[{ip}]"
    return f"{container_port}/{proto} -> {ip}:{host_port}"


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The kernel's ephemeral port range, or Linux's default (32768, 60999) if it cannot be read."""
    try:
        with open(path, encoding="ascii") as f:
            lo, hi = (int(field) for field in f.read().split())
    except (OSError, ValueError, UnicodeDecodeError):
        return DEFAULT_EPHEMERAL
    if not PORT_MIN <= lo <= hi <= PORT_MAX:
        return DEFAULT_EPHEMERAL
    return lo, hi


# --- helpers -----------------------------------------------------------------


def _fmt_range(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


def _example_range(start: int, length: int) -> str:
    end = min(start + length - 1, PORT_MAX)
    return f"{end - length + 1}-{end}"


def _split_proto(text: str, fail) -> tuple[str, str]:
    port_text, sep, proto = text.partition("/")
    if not sep:
        return port_text, "tcp"
    if port_text == "":
        raise fail(f"port missing before '/{proto}'; write it like 80/{proto or 'udp'}")
    if "/" in proto:
        raise fail("more than one '/'; give one protocol, like 80/udp")
    if proto == "":
        raise fail("empty protocol after '/'; use /tcp, /udp or /sctp, or leave it off for tcp")
    if proto.lower() not in PROTOCOLS:
        raise fail(f"unknown protocol {proto!r}; use tcp, udp or sctp, like 80/udp")
    return port_text, proto.lower()


def _parse_range(text: str, what: str, fail) -> tuple[int, int]:
    m = _RANGE_RE.fullmatch(text)
    if m is None:
        raise fail(f"{what} {text!r} is not a port number or range; use a number like 80 or a range like 8000-8010")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    for port in (lo, hi):
        if not PORT_MIN <= port <= PORT_MAX:
            raise fail(f"{what} {port} is out of range; ports are {PORT_MIN}-{PORT_MAX}")
    if lo > hi:
        raise fail(f"{what} range {text!r} is reversed; put the low port first, like {hi}-{lo}")
    return lo, hi


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _looks_like_unbracketed_ipv6(parts: list[str]) -> bool:
    # The address may have swallowed zero, one or two of the trailing port fields.
    whole = ":".join(parts).partition("/")[0]
    return any(_is_ipv6(c) for c in (whole, ":".join(parts[:-1]), ":".join(parts[:-2])))


def _parse_ipv4(text: str, fail) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    if re.fullmatch(_HOSTNAME_PATTERN, text):
        raise fail(f"{text!r} is a hostname; -p takes IP addresses only, like 127.0.0.1:8088:80")
    raise fail(f"{text!r} is not a valid IPv4 address; use one like 127.0.0.1, or [::1] for IPv6")


def _parse_bracketed_ip(text: str, fail) -> tuple[str, int]:
    if text == "":
        raise fail("empty IP in '[]'; write an IPv6 address like [::1]:8088:80")
    if "%" in text:
        raise fail(f"IPv6 scope ids like {text!r} are not supported; give the address without '%zone'")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        if re.fullmatch(_HOSTNAME_PATTERN, text):
            raise fail(f"{text!r} is a hostname; -p takes IP addresses only, like [::1]:8088:80") from None
        raise fail(f"{text!r} is not a valid IP address; use one like [::1]:8088:80") from None
    return str(addr), addr.version
