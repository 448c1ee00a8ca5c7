"""What `netkit up` / `netkit down` must change: the desired topology of a compose project
diffed against what the project made before and what exists now (pure: no kernel, no store).

A project's record (kept in netkit's state by engine/topology.py) says which networks and
containers the file made, with a fingerprint of the definition each was made from, its
networks and its dependencies. From that:
- a definition that changed is re-created (removed, then created), and so is everything that
  depends on it (containers on a re-created network, sharers of a re-created netns, linkers);
- what the file no longer defines is removed; what it defines and is missing is created;
- a name that exists but the project did not make is a conflict: nothing is changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from netkit.compose import NetworkSpec, Project, ServiceSpec, planned_bridge
from netkit.errors import Conflict, UserError


@dataclass
class Record:
    """What a project made: name -> {"fp": fingerprint, "networks": [...], "deps": [...]}."""
    project: str
    networks: dict[str, dict] = field(default_factory=dict)
    containers: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_json(cls, project: str, data: dict | None) -> "Record":
        data = data or {}
        return cls(project, dict(data.get("networks", {})), dict(data.get("containers", {})))

    def to_json(self) -> dict:
        return {"networks": self.networks, "containers": self.containers}

    def empty(self) -> bool:
        return not self.networks and not self.containers


@dataclass
class Plan:
    remove_containers: list[str] = field(default_factory=list)  # dependents first
    remove_networks: list[str] = field(default_factory=list)
    create_networks: list[NetworkSpec] = field(default_factory=list)
    create_containers: list[ServiceSpec] = field(default_factory=list)  # dependencies first
    reasons: dict[str, str] = field(default_factory=dict)  # "container web" -> why
    unchanged: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.remove_containers or self.remove_networks or self.create_networks or self.create_containers)

    def describe(self) -> list[str]:
        """One line per change, in the order it will happen."""
        created_c = {s.container for s in self.create_containers}
        created_n = {n.name for n in self.create_networks}
        lines = []
        for name in self.remove_containers:
            if name not in created_c:
                lines.append(f"remove container {name} ({self.reasons.get('container ' + name, 'not in the file')})")
        for name in self.remove_networks:
            if name not in created_n:
                lines.append(f"remove network {name} ({self.reasons.get('network ' + name, 'not in the file')})")
        for n in self.create_networks:
            why = self.reasons.get(f"network {n.name}", "new")
            lines.append(f"{'recreate' if n.name in self.remove_networks else 'create'} network {n.name} "
                         f"(bridge {planned_bridge(n)}; {why})")
        for s in self.create_containers:
            why = self.reasons.get(f"container {s.container}", "new")
            lines.append(f"{'recreate' if s.container in self.remove_containers else 'create'} container "
                         f"{s.container} (service {s.key}; {why})")
        return lines


def container_record(proj: Project, spec: ServiceSpec) -> dict:
    nets = [proj.networks[a.network].name for a in spec.networks]
    if spec.mode == "bridge":
        nets = ["bridge"]
    deps = [proj.services[d].container for d in spec.depends_on()]
    if spec.mode == "container" and spec.shares:
        deps.append(spec.shares)
    return {"fp": spec.fingerprint(), "networks": nets, "deps": deps, "service": spec.key}


def network_record(spec: NetworkSpec) -> dict:
    return {"fp": spec.fingerprint(), "key": spec.key, "external": spec.external}


def plan_up(proj: Project, record: Record, networks_now: set[str], containers_now: set[str]) -> Plan:
    plan = Plan()
    # networks
    renew_nets: set[str] = set()
    for spec in proj.networks.values():
        tag = f"network {spec.name}"
        mine = record.networks.get(spec.name)
        if spec.external:
            if spec.name not in networks_now:
                raise UserError(f"{proj.file}:{spec.line}: networks.{spec.key}: external network '{spec.name}' "
                                "does not exist; create it first (netkit network create)")
            continue
        if mine is None:
            if spec.name in networks_now:
                raise Conflict(f"{proj.file}:{spec.line}: networks.{spec.key}: network '{spec.name}' exists and was "
                               f"not made by project '{proj.name}'; remove it or rename the network")
            plan.create_networks.append(spec)
        elif spec.name not in networks_now:
            plan.create_networks.append(spec)
            plan.reasons[tag] = "missing"
        elif mine["fp"] != spec.fingerprint():
            renew_nets.add(spec.name)
            plan.create_networks.append(spec)
            plan.reasons[tag] = "definition changed"
        else:
            plan.unchanged.append(tag)
    desired_nets = {n.name for n in proj.networks.values()}
    gone_nets = [n for n in record.networks if n not in desired_nets]

    # containers
    desired = {s.container: s for s in proj.services.values()}
    for name in desired:
        if name not in record.containers and name in containers_now:
            spec = desired[name]
            raise Conflict(f"{proj.file}:{spec.line}: services.{spec.key}: container '{name}' exists and was not made "
                           f"by project '{proj.name}'; remove it or set another container_name")
    renew: set[str] = set()
    for name, spec in desired.items():
        mine = record.containers.get(name)
        if mine is not None and name in containers_now:
            if mine["fp"] != container_record(proj, spec)["fp"]:
                renew.add(name)
                plan.reasons[f"container {name}"] = "definition changed"
            elif renew_nets & set(mine.get("networks", [])):
                renew.add(name)
                plan.reasons[f"container {name}"] = "its network is re-created"
    # Whatever depends on a re-created or removed container is re-created too (transitively).
    gone_containers = {n for n in record.containers if n not in desired}
    changed = True
    while changed:
        changed = False
        for name, mine in record.containers.items():
            if name in renew or name in gone_containers or name not in containers_now:
                continue
            hit = set(mine.get("deps", [])) & (renew | gone_containers)
            if hit:
                renew.add(name)
                plan.reasons[f"container {name}"] = f"depends on {sorted(hit)[0]}"
                changed = True
    # removals: recorded containers that exist and are going or renewed, dependents first
    doomed = [n for n in record.containers if n in containers_now and (n in renew or n in gone_containers)]
    plan.remove_containers = _dependents_first(doomed, record)
    for name in gone_containers:
        plan.reasons.setdefault(f"container {name}", "not in the file")
    plan.remove_networks = [n for n in record.networks if n in networks_now and
                            (n in renew_nets or n in gone_nets) and not record.networks[n].get("external")]
    # creations: in dependency order
    for key in proj.service_order():
        spec = proj.services[key]
        name = spec.container
        if name in renew or name not in containers_now:
            if name not in renew and name in record.containers:
                plan.reasons[f"container {name}"] = "missing"
            plan.create_containers.append(spec)
        else:
            plan.unchanged.append(f"container {name}")
    return plan


def plan_down(record: Record, networks_now: set[str], containers_now: set[str]) -> Plan:
    plan = Plan()
    plan.remove_containers = _dependents_first([n for n in record.containers if n in containers_now], record)
    plan.remove_networks = [n for n in record.networks if n in networks_now and not record.networks[n].get("external")]
    for n in plan.remove_containers:
        plan.reasons[f"container {n}"] = "made by the file"
    for n in plan.remove_networks:
        plan.reasons[f"network {n}"] = "made by the file"
    return plan


def _dependents_first(names: list[str], record: Record) -> list[str]:
    """Order so that a container comes before everything it depends on."""
    chosen = set(names)
    order: list[str] = []

    def visit(name: str, seen: set[str]) -> None:
        if name in order or name in seen:
            return
        seen.add(name)
        for dep in record.containers.get(name, {}).get("deps", []):
            if dep in chosen:
                visit(dep, seen)
        order.append(name)

    for n in sorted(names):
        visit(n, set())
    return list(reversed(order))
