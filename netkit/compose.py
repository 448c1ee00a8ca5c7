"""Read the network part of a Docker Compose file into a desired topology (pure: no kernel, no state).

What is read: top-level `networks.*.{driver, internal, ipam.config[].{subnet, gateway, ip_range},
name, external, driver_opts (bridge name, mtu, icc, masquerade)}` and
`services.*.{networks (list, or map with ipv4_address/aliases), network_mode, ports, expose,
hostname, dns, dns_search, dns_opt, extra_hosts, links, container_name, mac_address}`.
Keys netkit has no meaning for (image, volumes, command ...) are collected for ONE notice line;
a wrong value, or an unknown key inside a network definition, is a `ComposeError` naming the file,
line and key path.

Names, as Docker Compose makes them:
- network KEY of project P is `P_KEY` (or its `name:`); its bridge is named as `network create`
  names it: `br-P_KEY` when that fits in 15 bytes, else Docker's `br-<12 hex of the network's ID>`
  (known once the network is made), or `driver_opts: {com.docker.network.bridge.name: IF}`;
- service S is container `P-S-1` (or its `container_name:`), and answers to `S` on its networks;
- services without `networks` or `network_mode` join the project's `default` network (`P_default`).
"""
from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import asdict, dataclass, field

from netkit.errors import UserError

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

# Service keys that shape the network; everything else is a container's business.
SERVICE_NETWORK_KEYS = {"networks", "network_mode", "ports", "expose", "hostname", "dns", "dns_search",
                        "dns_opt", "extra_hosts", "links", "container_name", "mac_address"}
TOP_LEVEL_KEYS = {"version", "name", "services", "networks", "volumes", "secrets", "configs", "include"}
NETWORK_KEYS = {"driver", "internal", "ipam", "name", "external", "driver_opts", "enable_ipv6", "labels",
                "attachable"}
IPAM_KEYS = {"driver", "config", "options"}
IPAM_CONFIG_KEYS = {"subnet", "gateway", "ip_range", "aux_addresses"}
SERVICE_NET_KEYS = {"ipv4_address", "aliases", "priority", "ipv6_address", "link_local_ips", "mac_address",
                    "driver_opts", "gw_priority"}
PORT_KEYS = {"target", "published", "host_ip", "protocol", "mode", "app_protocol", "name"}
DRIVER_OPTS = {
    "com.docker.network.bridge.name": "bridge",
    "com.docker.network.driver.mtu": "mtu",
    "com.docker.network.bridge.enable_icc": "icc",
    "com.docker.network.bridge.enable_ip_masquerade": "masquerade",
}


class ComposeError(UserError):
    """One line: FILE:LINE: key.path: what is wrong."""


@dataclass(frozen=True)
class NetworkSpec:
    key: str  # as written in the file
    name: str  # netkit's (and Docker's) network name
    bridge: str  # driver_opts com.docker.network.bridge.name, or "": named as `network create` does
    subnet: str | None = None
    gateway: str | None = None
    ip_range: str | None = None
    internal: bool = False
    mtu: int | None = None
    icc: bool = True
    masquerade: bool = True
    external: bool = False  # made by someone else: used, never created or removed
    line: int = 0

    def fingerprint(self) -> str:
        data = asdict(self)
        data.pop("line")
        # The bridge as planned (br-NAME when it fits): a project `up` recorded while compose
        # still named every bridge itself compares equal, and is not re-created.
        data["bridge"] = planned_bridge(self)
        return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class Attachment:
    network: str  # the compose key of the network
    ipv4_address: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceSpec:
    key: str  # service name in the file
    container: str  # container name
    mode: str = "networks"  # networks | bridge | host | none | service | container
    shares: str | None = None  # mode service: the service key; mode container: a container name
    networks: tuple[Attachment, ...] = ()
    ports: tuple[str, ...] = ()  # netkit/Docker -p specs
    expose: tuple[str, ...] = ()
    hostname: str | None = None
    mac: str | None = None
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()  # NAME:IP
    links: tuple[str, ...] = ()  # SERVICE[:ALIAS], as written
    line: int = 0

    def depends_on(self) -> list[str]:
        """Services that must exist first: the netns owner and the link targets."""
        deps = [self.shares] if self.mode == "service" else []
        return deps + [link.split(":", 1)[0] for link in self.links]

    def fingerprint(self) -> str:
        data = asdict(self)
        data.pop("line")
        return json.dumps(data, sort_keys=True)


@dataclass
class Project:
    name: str
    file: str
    networks: dict[str, NetworkSpec] = field(default_factory=dict)  # compose key -> spec
    services: dict[str, ServiceSpec] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)  # key path -> line, for the one notice line

    def notice(self) -> str | None:
        if not self.ignored:
            return None
        keys = sorted({path.rsplit(".", 1)[-1] for path in self.ignored})
        return f"netkit up: ignoring keys that do not concern the network: {', '.join(keys)}"

    def service_order(self) -> list[str]:
        """Services in an order where every dependency comes first (checked for cycles on load)."""
        done: list[str] = []

        def visit(key: str) -> None:
            if key in done:
                return
            for dep in self.services[key].depends_on():
                visit(dep)
            done.append(key)

        for key in self.services:
            visit(key)
        return done


# --- YAML with line numbers -------------------------------------------------------------------

class Mapping(dict):
    """A YAML mapping that remembers its own line and the line of each key (1-based)."""
    line = 0

    def __init__(self):
        super().__init__()
        self.lines: dict = {}


class Sequence(list):
    line = 0

    def __init__(self):
        super().__init__()
        self.lines: list[int] = []


def load_yaml(text: str, file: str):
    """Parse YAML keeping line numbers; duplicate keys are errors (YAML says so, PyYAML does not)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        loader.flatten_mapping(node)  # `<<: *anchor` merge keys
        out = Mapping()
        out.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise ComposeError(f"{file}:{line}: a key must be a plain word")
            key = str(key)
            if key in out:
                raise ComposeError(f"{file}:{line}: {key}: duplicate key (first on line {out.lines[key]})")
            out[key] = loader.construct_object(value_node, deep=True)
            out.lines[key] = line
        return out

    def sequence(loader, node):
        out = Sequence()
        out.line = node.start_mark.line + 1
        for item in node.value:
            out.append(loader.construct_object(item, deep=True))
            out.lines.append(item.start_mark.line + 1)
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 0
        raise ComposeError(f"{file}:{line}: not valid YAML: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise ComposeError(f"{file}: not valid YAML: {err}") from None


# --- reading ----------------------------------------------------------------------------------

class _Reader:
    def __init__(self, file: str):
        self.file = file
        self.ignored: dict[str, int] = {}

    def fail(self, line: int, path: str, message: str):
        raise ComposeError(f"{self.file}:{line}: {path}: {message}")

    def line_of(self, parent, key, default: int = 0) -> int:
        if isinstance(parent, Mapping):
            return parent.lines.get(key, parent.line)
        if isinstance(parent, Sequence) and isinstance(key, int) and key < len(parent.lines):
            return parent.lines[key]
        return default

    def mapping(self, value, line: int, path: str) -> Mapping:
        if value is None:
            value = Mapping()
            value.line = line
        if not isinstance(value, Mapping):
            self.fail(line, path, f"expected a mapping (key: value), got {_kind(value)}")
        return value

    def check_keys(self, value: Mapping, allowed: set[str], path: str) -> None:
        for key in value:
            if key not in allowed and not key.startswith("x-"):
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                also = f"; did you mean '{hint[0]}'?" if hint else f"; known keys: {', '.join(sorted(allowed))}"
                self.fail(value.lines[key], f"{path}.{key}", f"unknown key{also}")

    def string(self, value, line: int, path: str, allow_int: bool = False) -> str:
        if isinstance(value, bool) or value is None or not isinstance(value, (str, int)) \
                or (isinstance(value, int) and not allow_int):
            self.fail(line, path, f"expected a string, got {_kind(value)}")
        return str(value)

    def boolean(self, value, line: int, path: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(line, path, f"expected true or false, got {_kind(value)}")

    def strings(self, value, line: int, path: str) -> list[str]:
        """A string or a list of strings (compose allows both for dns, dns_search ...)."""
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return [str(value)]
        if not isinstance(value, Sequence):
            self.fail(line, path, f"expected a string or a list of strings, got {_kind(value)}")
        return [self.string(v, value.lines[i], f"{path}[{i}]", allow_int=True) for i, v in enumerate(value)]

    def checked(self, line: int, path: str, check, *args):
        """Run a validator from the planners; turn its UserError into a located one."""
        try:
            return check(*args)
        except ComposeError:
            raise
        except UserError as err:
            self.fail(line, path, str(err))


def _kind(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return "a list"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    return f"'{value}'"


def project_name(raw: str) -> str:
    """Compose's rule: lowercase letters, digits, '_' and '-', starting with a letter or digit."""
    name = re.sub(r"[^a-z0-9_-]", "", raw.lower())
    name = name.lstrip("_-")
    if not name:
        raise UserError(f"cannot make a project name from '{raw}': pass -p NAME")
    return name


def planned_bridge(spec: NetworkSpec) -> str:
    """The bridge `up` makes for a network, for people: the file's name, else `br-NAME`, else
    `br-<id>` (12 hex of the ID the network gets when made; networks.create picks it)."""
    from netkit import naming

    return spec.bridge or naming.plain_bridge_name(spec.name) or "br-<id>"


def find_file(directory: str = ".") -> str:
    for name in DEFAULT_FILES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise UserError(f"no compose file here ({', '.join(DEFAULT_FILES)}): pass -f FILE")


def load(path: str, project: str | None = None) -> Project:
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as err:
        raise UserError(f"cannot read compose file {path}: {err.strerror}") from None
    return parse(text, path, project)


def parse(text: str, file: str = "compose.yaml", project: str | None = None) -> Project:
    r = _Reader(file)
    doc = load_yaml(text, file)
    doc = r.mapping(doc, 1, "(file)")
    r.check_keys(doc, TOP_LEVEL_KEYS, "(top level)")
    for key in ("version", "volumes", "secrets", "configs", "include"):
        if key in doc:
            r.ignored[key] = doc.lines[key]
    if project is None:
        if "name" in doc:
            project = r.string(doc["name"], doc.lines["name"], "name")
        else:
            project = os.environ.get("COMPOSE_PROJECT_NAME") or \
                os.path.basename(os.path.dirname(os.path.abspath(file)))
    proj = Project(name=project_name(project), file=file)

    raw_nets = r.mapping(doc.get("networks"), doc.lines.get("networks", 1), "networks")
    for key, value in raw_nets.items():
        proj.networks[key] = _network(r, proj.name, key, value, raw_nets.lines[key])

    services = doc.get("services")
    if services is None:
        r.fail(1, "services", "the file defines no services")
    services = r.mapping(services, doc.lines["services"], "services")
    for key, value in services.items():
        spec = _service(r, proj, key, value, services.lines[key])
        proj.services[key] = spec
    _check_references(r, proj)
    proj.ignored = r.ignored
    return proj


def _network(r: _Reader, project: str, key: str, value, line: int) -> NetworkSpec:
    from netkit import ipam, naming

    path = f"networks.{key}"
    r.checked(line, path, naming.validate_object_name, "network", key)
    value = r.mapping(value, line, path)
    r.check_keys(value, NETWORK_KEYS, path)
    at = value.lines.get
    for ignored in ("labels", "attachable"):
        if ignored in value:
            r.ignored[f"{path}.{ignored}"] = at(ignored)
    name = f"{project}_{key}"
    if "name" in value:
        name = r.string(value["name"], at("name"), f"{path}.name")
    r.checked(line, path, naming.validate_object_name, "network", name)
    external = r.boolean(value["external"], at("external"), f"{path}.external") if "external" in value else False
    if external:
        if "name" not in value:
            name = key  # an external network is looked up by its own name
        extra = sorted(set(value) - {"external", "name"})
        if extra:
            r.fail(at(extra[0]), f"{path}.{extra[0]}", "an external network is made elsewhere: only 'name' may go with it")
        return NetworkSpec(key=key, name=name, bridge="", external=True, line=line)
    fields: dict = {}
    if "driver" in value:
        driver = r.string(value["driver"], at("driver"), f"{path}.driver")
        if driver != "bridge":
            r.fail(at("driver"), f"{path}.driver", f"driver '{driver}' is not supported: netkit makes 'bridge' networks")
    if "internal" in value:
        fields["internal"] = r.boolean(value["internal"], at("internal"), f"{path}.internal")
    if "enable_ipv6" in value and r.boolean(value["enable_ipv6"], at("enable_ipv6"), f"{path}.enable_ipv6"):
        r.fail(at("enable_ipv6"), f"{path}.enable_ipv6", "netkit networks are IPv4 only: remove it or set false")
    bridge = None
    if "driver_opts" in value:
        opts = r.mapping(value["driver_opts"], at("driver_opts"), f"{path}.driver_opts")
        r.check_keys(opts, set(DRIVER_OPTS), f"{path}.driver_opts")
        for opt, v in opts.items():
            where, p = opts.lines[opt], f"{path}.driver_opts.{opt}"
            target = DRIVER_OPTS[opt]
            if target == "bridge":
                bridge = r.checked(where, p, naming.validate_ifname, r.string(v, where, p), "bridge")
            elif target == "mtu":
                mtu = _int(r, v, where, p)
                fields["mtu"] = r.checked(where, p, naming.validate_mtu, mtu)
            else:
                fields[target] = r.boolean(v, where, p)
    if "ipam" in value:
        ipam_map = r.mapping(value["ipam"], at("ipam"), f"{path}.ipam")
        r.check_keys(ipam_map, IPAM_KEYS, f"{path}.ipam")
        if "driver" in ipam_map and ipam_map["driver"] != "default":
            r.fail(ipam_map.lines["driver"], f"{path}.ipam.driver", "only the 'default' IPAM driver is supported")
        if "options" in ipam_map:
            r.ignored[f"{path}.ipam.options"] = ipam_map.lines["options"]
        configs = ipam_map.get("config") or Sequence()
        cline = ipam_map.lines.get("config", at("ipam"))
        if not isinstance(configs, Sequence):
            r.fail(cline, f"{path}.ipam.config", f"expected a list of subnets, got {_kind(configs)}")
        if len(configs) > 1:
            r.fail(configs.lines[1], f"{path}.ipam.config[1]", "netkit networks have one IPv4 subnet: keep one entry")
        if configs:
            cfg = r.mapping(configs[0], configs.lines[0], f"{path}.ipam.config[0]")
            cpath = f"{path}.ipam.config[0]"
            r.check_keys(cfg, IPAM_CONFIG_KEYS, cpath)
            if "aux_addresses" in cfg:
                r.fail(cfg.lines["aux_addresses"], f"{cpath}.aux_addresses", "not supported by netkit: remove it")
            for k, check in (("subnet", ipam.parse_subnet), ("ip_range", ipam.parse_subnet),
                             ("gateway", ipam.parse_ip)):
                if k in cfg:
                    text = r.string(cfg[k], cfg.lines[k], f"{cpath}.{k}")
                    r.checked(cfg.lines[k], f"{cpath}.{k}", check, text, k)
                    fields[k] = text
            if ("gateway" in fields or "ip_range" in fields) and "subnet" not in fields:
                r.fail(cfg.line, cpath, "gateway and ip_range need a subnet")
            if "subnet" in fields:
                r.checked(cfg.line, cpath, ipam.plan_layout, ipam.parse_subnet(fields["subnet"]),
                          fields.get("gateway"), fields.get("ip_range"))
    return NetworkSpec(key=key, name=name, bridge=bridge or "", line=line, **fields)


def _int(r: _Reader, value, line: int, path: str) -> int:
    if isinstance(value, bool):
        r.fail(line, path, f"expected a number, got {_kind(value)}")
    try:
        return int(value)
    except (TypeError, ValueError):
        r.fail(line, path, f"expected a number, got {_kind(value)}")


def _near_network_key(key: str) -> str | None:
    """A key that looks like a misspelt network key is an error, not a notice."""
    hint = difflib.get_close_matches(key, sorted(SERVICE_NETWORK_KEYS), n=1, cutoff=0.8)
    return hint[0] if hint else None


def _service(r: _Reader, proj: Project, key: str, value, line: int) -> ServiceSpec:
    from netkit import names, naming

    path = f"services.{key}"
    r.checked(line, path, naming.validate_object_name, "service", key)
    value = r.mapping(value, line, path)
    at = value.lines.get
    for k in value:
        if k not in SERVICE_NETWORK_KEYS and not k.startswith("x-"):
            near = _near_network_key(k)
            if near:
                r.fail(at(k), f"{path}.{k}", f"unknown key; did you mean '{near}'?")
            r.ignored[f"{path}.{k}"] = at(k)
    fields: dict = {}
    container = f"{proj.name}-{key}-1"
    if "container_name" in value:
        container = r.string(value["container_name"], at("container_name"), f"{path}.container_name")
    r.checked(at("container_name", line), f"{path}.container_name", naming.validate_object_name, "container",
              container)

    if "network_mode" in value and "networks" in value:
        r.fail(at("network_mode"), f"{path}.network_mode", "conflicts with 'networks': use one of them")
    if "network_mode" in value:
        mode_text = r.string(value["network_mode"], at("network_mode"), f"{path}.network_mode")
        kind, _, target = mode_text.partition(":")
        if mode_text in ("bridge", "host", "none"):
            fields["mode"] = mode_text
        elif kind in ("service", "container") and target:
            fields["mode"], fields["shares"] = kind, target
        else:
            r.fail(at("network_mode"), f"{path}.network_mode",
                   f"'{mode_text}' is not a mode: use bridge, host, none, service:NAME or container:NAME")
    else:
        fields["networks"] = tuple(_attachments(r, value.get("networks"), at("networks", line), f"{path}.networks")) \
            if "networks" in value else (Attachment("default"),)

    if "ports" in value:
        fields["ports"] = tuple(_ports(r, value["ports"], at("ports"), f"{path}.ports"))
    if "expose" in value:
        from netkit import portspec

        exposed = r.strings(value["expose"], at("expose"), f"{path}.expose")
        for i, text in enumerate(exposed):
            r.checked(_item_line(value["expose"], i, at("expose")), f"{path}.expose[{i}]", portspec.parse_expose, text)
        fields["expose"] = tuple(exposed)
    if "hostname" in value:
        host = r.string(value["hostname"], at("hostname"), f"{path}.hostname")
        fields["hostname"] = r.checked(at("hostname"), f"{path}.hostname", names.validate_hostname, host)
    if "mac_address" in value:
        mac = r.string(value["mac_address"], at("mac_address"), f"{path}.mac_address")
        fields["mac"] = r.checked(at("mac_address"), f"{path}.mac_address", naming.validate_mac, mac)
    if "dns" in value:
        servers = r.strings(value["dns"], at("dns"), f"{path}.dns")
        for i, s in enumerate(servers):
            r.checked(_item_line(value["dns"], i, at("dns")), f"{path}.dns[{i}]", names.validate_dns_server, s)
        fields["dns"] = tuple(servers)
    for k, target in (("dns_search", "dns_search"), ("dns_opt", "dns_options")):
        if k in value:
            words = r.strings(value[k], at(k), f"{path}.{k}")
            for i, w in enumerate(words):
                if not w or any(ch.isspace() for ch in w):
                    r.fail(_item_line(value[k], i, at(k)), f"{path}.{k}[{i}]", f"'{w}' must be one word")
            fields[target] = tuple(words)
    if "extra_hosts" in value:
        fields["extra_hosts"] = tuple(_extra_hosts(r, value["extra_hosts"], at("extra_hosts"), f"{path}.extra_hosts"))
    if "links" in value:
        links = r.strings(value["links"], at("links"), f"{path}.links")
        fields["links"] = tuple(links)
    if fields.get("mode") in ("host", "service", "container"):
        for k in ("hostname", "dns", "dns_search", "dns_opt", "extra_hosts", "mac_address", "ports", "expose"):
            if k in value and not (k in ("ports", "expose") and fields["mode"] == "host"):
                r.fail(at(k), f"{path}.{k}",
                       f"network_mode {value['network_mode']} shares another's network: '{k}' cannot apply")
    return ServiceSpec(key=key, container=container, line=line, **fields)


def _item_line(seq, index: int, default: int) -> int:
    return seq.lines[index] if isinstance(seq, Sequence) and index < len(seq.lines) else default


def _attachments(r: _Reader, value, line: int, path: str) -> list[Attachment]:
    from netkit import ipam, naming

    if isinstance(value, Sequence):
        return [Attachment(r.string(v, value.lines[i], f"{path}[{i}]")) for i, v in enumerate(value)]
    value = r.mapping(value, line, path)
    out: list[tuple[int, int, Attachment]] = []
    for order, (key, conf) in enumerate(value.items()):
        kline, kpath = value.lines[key], f"{path}.{key}"
        conf = r.mapping(conf, kline, kpath)
        r.check_keys(conf, SERVICE_NET_KEYS, kpath)
        for unsupported in ("ipv6_address", "link_local_ips", "driver_opts"):
            if unsupported in conf:
                r.fail(conf.lines[unsupported], f"{kpath}.{unsupported}", "not supported by netkit (IPv4 only): remove it")
        if "mac_address" in conf:
            r.fail(conf.lines["mac_address"], f"{kpath}.mac_address", "set the service's mac_address instead")
        ip = None
        if "ipv4_address" in conf:
            ip = r.string(conf["ipv4_address"], conf.lines["ipv4_address"], f"{kpath}.ipv4_address")
            r.checked(conf.lines["ipv4_address"], f"{kpath}.ipv4_address", ipam.parse_ip, ip)
        aliases: list[str] = []
        if "aliases" in conf:
            aliases = r.strings(conf["aliases"], conf.lines["aliases"], f"{kpath}.aliases")
            for a in aliases:
                r.checked(conf.lines["aliases"], f"{kpath}.aliases", naming.validate_object_name, "network alias", a)
        priority = 0
        for k in ("priority", "gw_priority"):
            if k in conf:
                priority = max(priority, _int(r, conf[k], conf.lines[k], f"{kpath}.{k}"))
        out.append((-priority, order, Attachment(key, ip, tuple(aliases))))
    # Higher priority first (compose connects in that order); the first gives the default route.
    return [a for _p, _o, a in sorted(out)]


def _ports(r: _Reader, value, line: int, path: str) -> list[str]:
    from netkit import portspec

    if not isinstance(value, Sequence):
        r.fail(line, path, f"expected a list of ports, got {_kind(value)}")
    specs = []
    for i, item in enumerate(value):
        iline, ipath = value.lines[i], f"{path}[{i}]"
        if isinstance(item, Mapping):
            r.check_keys(item, PORT_KEYS, ipath)
            if "target" not in item:
                r.fail(item.line, ipath, "a port mapping needs 'target' (the container port)")
            text = str(_int(r, item["target"], item.lines["target"], f"{ipath}.target"))
            if item.get("published") not in (None, ""):
                text = f"{r.string(item['published'], item.lines['published'], f'{ipath}.published', True)}:{text}"
            if item.get("host_ip"):
                host_ip = r.string(item["host_ip"], item.lines["host_ip"], f"{ipath}.host_ip")
                text = f"{host_ip}:{text}" if ":" in text else f"{host_ip}::{text}"
            if item.get("protocol"):
                text += "/" + r.string(item["protocol"], item.lines["protocol"], f"{ipath}.protocol")
        else:
            text = r.string(item, iline, ipath, allow_int=True)
        r.checked(iline, ipath, portspec.parse_port_spec, text)
        specs.append(text)
    return specs


def _extra_hosts(r: _Reader, value, line: int, path: str) -> list[str]:
    from netkit import names

    entries: list[tuple[int, str]] = []
    if isinstance(value, Mapping):
        entries = [(value.lines[k], f"{k}:{v}") for k, v in value.items()]
    else:
        for i, text in enumerate(r.strings(value, line, path)):
            # compose accepts HOST:IP and HOST=IP
            entries.append((_item_line(value, i, line), text.replace("=", ":", 1) if "=" in text else text))
    for where, entry in entries:
        r.checked(where, path, names.parse_add_host, entry)
    return [e for _w, e in entries]


def _check_references(r: _Reader, proj: Project) -> None:
    """Every network, service and link named exists; no dependency cycles; no name used twice."""
    used_default = any(a.network == "default" for s in proj.services.values() for a in s.networks)
    if used_default and "default" not in proj.networks:
        proj.networks["default"] = NetworkSpec(key="default", name=f"{proj.name}_default", bridge="", line=0)
    containers: dict[str, str] = {}
    for s in proj.services.values():
        path = f"services.{s.key}"
        if s.container in containers:
            r.fail(s.line, path, f"container name '{s.container}' is also used by service '{containers[s.container]}'")
        containers[s.container] = s.key
        for a in s.networks:
            if a.network not in proj.networks:
                r.fail(s.line, f"{path}.networks.{a.network}",
                       f"network '{a.network}' is not defined under the top-level 'networks'")
        if s.mode == "service" and s.shares not in proj.services:
            r.fail(s.line, f"{path}.network_mode", f"no service '{s.shares}' in this file")
        if s.mode == "service" and s.shares == s.key:
            r.fail(s.line, f"{path}.network_mode", "a service cannot share its own network")
        for link in s.links:
            target = link.split(":", 1)[0]
            if target not in proj.services:
                r.fail(s.line, f"{path}.links", f"no service '{target}' in this file")
    # cycles
    state: dict[str, int] = {}

    def visit(key: str, chain: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            r.fail(proj.services[key].line, f"services.{key}",
                   f"dependency cycle through links/network_mode: {' -> '.join(chain + [key])}")
        state[key] = 1
        for dep in proj.services[key].depends_on():
            visit(dep, chain + [key])
        state[key] = 2

    for key in proj.services:
        visit(key, [])
