"""Render a container's /etc/hosts and /etc/resolv.conf the way Docker writes them, and
validate the names and addresses that go into them. Pure text: writing the files is done elsewhere."""

from __future__ import annotations

import ipaddress
import re

from netkit.errors import UserError

# What Docker puts at the top of every container's /etc/hosts.
_HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def validate_hostname(name: str) -> str:
    """Return `name` if it is an RFC 1123 host name (labels of letters, digits and inner
    hyphens, 1-63 characters each, 253 in all); raise UserError otherwise."""
    if not name:
        raise UserError('invalid hostname "": it is empty')
    if len(name) > 253:
        raise UserError(f'invalid hostname "{name}": longer than 253 characters')
    for label in name.split("."):
        if not label:
            raise UserError(f'invalid hostname "{name}": empty label (leading, trailing or double dot)')
        if len(label) > 63:
            raise UserError(f'invalid hostname "{name}": label "{label}" is longer than 63 characters')
        if not _LABEL.match(label):
            raise UserError(
                f'invalid hostname "{name}": label "{label}" may hold only letters, digits '
                "and hyphens, and may not start or end with a hyphen"
            )
    return name


def _ip(text: str) -> str:
    """Normalised IP literal, or ValueError."""
    return str(ipaddress.ip_address(text))


def validate_dns_server(text: str) -> str:
    """Return the normalised IPv4/IPv6 literal `text`; raise UserError if it is not one."""
    try:
        if not text.isprintable():  # a newline here went into resolv.conf as is
            raise ValueError(text)
        return _ip(text.strip())
    except ValueError:
        raise UserError(f'invalid DNS server "{text}": not an IPv4 or IPv6 address') from None


# Docker's special --add-host address: the host's address as the container sees it.
HOST_GATEWAY = "host-gateway"


def parse_add_host(text: str) -> tuple[str, str]:
    """Split an --add-host value: "db:10.0.0.5", "v6:[::1]", "v6:::1" or Docker 25's
    "db=10.0.0.5" -> ("db", "10.0.0.5"); "db:host-gateway" -> ("db", HOST_GATEWAY), which the
    writer of /etc/hosts replaces with an address. Raise UserError naming what is wrong."""
    # A host name cannot hold ':' or '=', so the first one separates name from address,
    # which lets "v6:::1" through unbracketed like Docker does.
    sep = min((i for i in (text.find("="), text.find(":")) if i >= 0), default=-1)
    if sep < 0:
        raise UserError(f'invalid --add-host "{text}": expected NAME:IP')
    name, addr = text[:sep], text[sep + 1 :]
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    try:
        ip = addr if addr == HOST_GATEWAY else _ip(addr)
    except ValueError:
        raise UserError(f'invalid --add-host "{text}": "{addr}" is not an IP address') from None
    try:
        validate_hostname(name)
    except UserError as err:
        raise UserError(f'invalid --add-host "{text}": {err}') from None
    return name, ip


def render_hosts(
    hostname: str,
    addresses: list[tuple[str, list[str]]],
    extra_hosts: list[str],
    links: list[tuple[str, str, str]],
    host_gateway: str | None = None,
) -> str:
    """Docker's /etc/hosts: localhost lines, then --add-host entries (NAME:host-gateway gets
    `host_gateway`), then --link entries (ip, alias, name), then the container's own addresses
    with its hostname and aliases."""
    lines = [_HOSTS_HEADER]
    for entry in extra_hosts:
        name, ip = parse_add_host(entry)
        if ip == HOST_GATEWAY:
            if host_gateway is None:  # no network left whose gateway is this host
                lines.append(f"# {name}: host-gateway has no address (no network gateway, no host_gateway_ip)\n")
                continue
            ip = host_gateway
        lines.append(f"{ip}\t{name}\n")
    for ip, alias, name in links:
        lines.append(f"{ip}\t{alias} {name}\n" if alias != name else f"{ip}\t{name}\n")
    for ip, aliases in addresses:
        names = [hostname] + [a for a in aliases if a != hostname]
        lines.append(f"{ip}\t{' '.join(names)}\n")
    return "".join(lines)


def qualified(table: dict[str, list[str]], network: str) -> dict[str, list[str]]:
    """A network's DNS records plus each name qualified with the network's name, as Docker's
    resolver answers `web.app` for container (or alias) `web` on network `app`."""
    out = {name: list(ips) for name, ips in table.items()}
    suffix = "." + network.lower()
    for name, ips in table.items():
        if not name.endswith(suffix):
            merged = out.setdefault(name + suffix, [])
            merged.extend(ip for ip in ips if ip not in merged)
    return out


def _is_loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def _parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search/domain lines, options lines) of a resolv.conf text."""
    servers, search, options = [], [], []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            search.append(line)
        elif fields[0] == "options":
            options.append(line)
    return servers, search, options


def upstream_servers(host_resolv_text: str) -> list[str]:
    """The host's nameservers minus loopback ones: what the embedded DNS forwards to."""
    servers, _, _ = _parse_resolv(host_resolv_text)
    return [s for s in servers if not _is_loopback(s)]


def render_resolv(
    host_resolv_text: str,
    dns: list[str],
    search: list[str],
    options: list[str],
    network_dns: str | None,
) -> str:
    """A container's /etc/resolv.conf with Docker's rules: the network's embedded DNS alone
    if there is one, else --dns, else the host's non-loopback nameservers (never a public
    fallback); --dns-search/--dns-option replace the host's search/options lines."""
    host_servers, host_search, host_options = _parse_resolv(host_resolv_text)
    out = ["# Generated by netkit\n"]
    if network_dns:
        # The embedded server forwards other names upstream; record to where, as Docker's
        # "# ExtServers:" comment does, so a reader can tell where answers come from.
        ext = dns or upstream_servers(host_resolv_text)
        out.append(f"nameserver {network_dns}\n")
    else:
        servers = dns or [s for s in host_servers if not _is_loopback(s)]
        if servers:
            out.extend(f"nameserver {s}\n" for s in servers)
        else:
            # Docker would fall back to 8.8.8.8/8.8.4.4 here; netkit sends nothing off this machine.
            out.append(
                "# no nameserver: the host has none but loopback ones, which a container cannot reach, "
                "and netkit does not fall back to public DNS\n"
            )
    if search:
        out.append(f"search {' '.join(search)}\n")
    else:
        out.extend(f"{line}\n" for line in host_search)
    if options:
        opt_lines = [f"options {' '.join(options)}"]
    else:
        opt_lines = host_options
    if network_dns and not any("ndots:" in line for line in opt_lines):
        # Like Docker: with the embedded DNS a bare container name is asked as-is first,
        # not after each search domain has been tried (and forwarded) upstream.
        opt_lines = opt_lines + ["options ndots:0"]
    out.extend(f"{line}\n" for line in opt_lines)
    if network_dns:
        out.append(f"# ExtServers: [{' '.join(ext)}]\n")
    return "".join(out)
