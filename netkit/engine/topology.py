"""`netkit up` / `netkit down`: bring a compose project's networks and containers in line with
its file, in one process and few transactions.

Every call into the other use cases (networks.create/remove, containers.create/connect/remove)
is in this module, in `_Engine`, so they are easy to adapt when the engine changes. They run
inside one batch: a Context whose `change()` is re-entrant, so the whole batch is one state
transaction under one lock, with one firewall sync at its end, and all or nothing. Removals and
creations are two batches, because deletions only reach the kernel after their commit (and a
re-created object needs its old name free).

Which objects a project made is recorded in netkit's state (meta key `compose:<project>`), so
`down` removes exactly those, and `up` knows what changed (topology_plan.py).
"""
from __future__ import annotations

from contextlib import contextmanager

from netkit import compose, topology_plan
from netkit.engine.context import Context
from netkit.errors import Conflict, UserError

META_PREFIX = "compose:"


class BatchContext(Context):
    """A Context whose nested change() calls join the outer one: one transaction, one lock,
    one firewall sync (the engine compares the whole rule set when more than one container
    changed), and every kernel step undone if anything in the batch fails."""

    _depth = 0

    @contextmanager
    def change(self):
        if self._depth:
            yield self
            return
        self._depth += 1
        try:
            with super().change():
                yield self
        finally:
            self._depth -= 1


class _Engine:
    """The only place that calls the other use cases."""

    def __init__(self, ctx: BatchContext, proj: compose.Project | None):
        self.ctx = ctx
        self.proj = proj

    def create_network(self, spec: compose.NetworkSpec) -> None:
        from netkit import naming
        from netkit.engine import networks
        from netkit.kernel.nsutil import link_exists

        # Named as `network create` names it (naming.bridge_name_for: br-NAME, else br-<12 hex of
        # the id)); a name from the file is made, never an existing interface adopted.
        bridge = spec.bridge or naming.plain_bridge_name(spec.name)
        owner = next((n.name for n in self.ctx.store.networks() if n.bridge == bridge), None)
        if bridge and owner is None and link_exists(bridge):
            raise Conflict(f"interface '{bridge}' (the bridge of network '{spec.name}') already exists; "
                           "remove it or set driver_opts com.docker.network.bridge.name")
        req = networks.NetworkRequest(spec.name, spec.subnet, spec.gateway, spec.ip_range, spec.bridge or None,
                                      spec.mtu, spec.internal, spec.icc, spec.masquerade)
        networks.create(self.ctx, req)

    def remove_network(self, name: str) -> None:
        from netkit.engine import networks

        networks.remove(self.ctx, name)

    def create_container(self, spec: compose.ServiceSpec) -> None:
        from netkit.engine import containers

        proj = self.proj
        attach = list(spec.networks)
        if spec.mode == "networks":
            net = proj.networks[attach[0].network].name if attach else "none"
        elif spec.mode == "service":
            net = f"container:{proj.services[spec.shares].container}"
        elif spec.mode == "container":
            net = f"container:{spec.shares}"
        else:
            net = spec.mode
        links = []
        for link in spec.links:
            svc, _, alias = link.partition(":")
            links.append(f"{proj.services[svc].container}:{alias or svc}")
        first = attach[0] if attach and spec.mode == "networks" else None
        req = containers.ContainerRequest(
            spec.container, net, ip=first.ipv4_address if first else None, mac=spec.mac, hostname=spec.hostname,
            dns=list(spec.dns), dns_search=list(spec.dns_search), dns_options=list(spec.dns_options),
            add_host=list(spec.extra_hosts), links=links,
            network_alias=self._aliases(spec, first) if first else [],
            publish=list(spec.ports), expose=list(spec.expose))
        containers.create(self.ctx, req)
        for more in attach[1:] if first else []:
            containers.connect(self.ctx, proj.networks[more.network].name, spec.container, more.ipv4_address,
                               self._aliases(spec, more))

    @staticmethod
    def _aliases(spec: compose.ServiceSpec, att: compose.Attachment) -> list[str]:
        # Compose makes every service reachable by its service name on each of its networks.
        names = [spec.key] if spec.key != spec.container else []
        return names + [a for a in att.aliases if a not in names and a != spec.container]

    def remove_container(self, name: str) -> None:
        from netkit.engine import containers

        containers.remove(self.ctx, name, force=True)  # like compose down: the service's processes stop


def _located(proj: compose.Project, spec, kind: str, err: UserError) -> UserError:
    """The engine's message, prefixed with the file, line and key of the definition."""
    key = spec.key if spec is not None else "?"
    line = spec.line if spec is not None else 0
    return type(err)(f"{proj.file}:{line}: {kind}.{key}: {err}")


def _record(ctx, project: str) -> topology_plan.Record:
    return topology_plan.Record.from_json(project, ctx.store.meta(META_PREFIX + project))


def _save_record(ctx, rec: topology_plan.Record) -> None:
    if rec.empty():
        ctx.store.delete_meta(META_PREFIX + rec.project)
    else:
        ctx.store.put_meta(META_PREFIX + rec.project, rec.to_json())


def _now(ctx) -> tuple[set[str], set[str]]:
    return {n.name for n in ctx.store.networks()}, {c.name for c in ctx.store.containers()}


def _remove_batch(ctx: BatchContext, plan: topology_plan.Plan, project: str, forget: bool = False) -> None:
    with ctx.change():
        rec = _record(ctx, project)
        engine = _Engine(ctx, None)
        for name in plan.remove_containers:
            engine.remove_container(name)
            rec.containers.pop(name, None)
        for name in plan.remove_networks:
            engine.remove_network(name)
            rec.networks.pop(name, None)
        _save_record(ctx, topology_plan.Record(project) if forget else rec)


def up(proj: compose.Project, dry_run: bool = False) -> tuple[topology_plan.Plan, list[str]]:
    """Make the project's networks and containers what its file says. Returns the plan and,
    with dry_run, the commands it stands for."""
    ctx = BatchContext(dry_run=dry_run)
    ctx.require_root()
    try:
        rec = _record(ctx, proj.name)
        nets_now, cts_now = _now(ctx)
        plan = topology_plan.plan_up(proj, rec, nets_now, cts_now)
        if plan.empty():
            if not dry_run:
                _forget_missing(proj, ctx)
            return plan, []
        printed: list[str] = []
        if plan.remove_containers or plan.remove_networks:
            _remove_batch(ctx, plan, proj.name)
            printed += ctx.printed
            if dry_run:
                printed.append("# ... then the re-creations, planned once the removals are done")
                return plan, printed
        if plan.create_networks or plan.create_containers:
            ctx.printed = []
            with ctx.change():
                rec = _record(ctx, proj.name)
                engine = _Engine(ctx, proj)
                for spec in plan.create_networks:
                    try:
                        engine.create_network(spec)
                    except UserError as err:
                        raise _located(proj, spec, "networks", err) from None
                    rec.networks[spec.name] = topology_plan.network_record(spec)
                for spec in plan.create_containers:
                    try:
                        engine.create_container(spec)
                    except UserError as err:
                        raise _located(proj, spec, "services", err) from None
                    rec.containers[spec.container] = topology_plan.container_record(proj, spec)
                _prune(proj, rec)
                _save_record(ctx, rec)
            printed += ctx.printed
        return plan, printed
    finally:
        ctx.close()


def _prune(proj: compose.Project, rec: topology_plan.Record) -> None:
    """Drop record entries for objects the file no longer defines (already removed or gone)."""
    containers = {s.container for s in proj.services.values()}
    networks = {n.name for n in proj.networks.values() if not n.external}
    for name in [n for n in rec.containers if n not in containers]:
        rec.containers.pop(name)
    for name in [n for n in rec.networks if n not in networks]:
        rec.networks.pop(name)


def _forget_missing(proj: compose.Project, ctx: BatchContext) -> None:
    rec = _record(ctx, proj.name)
    before = rec.to_json()
    _prune(proj, rec)
    if rec.to_json() != before:
        with ctx.change():
            _save_record(ctx, rec)


def down(project: str, dry_run: bool = False) -> tuple[topology_plan.Plan, list[str]]:
    ctx = BatchContext(dry_run=dry_run)
    ctx.require_root()
    try:
        rec = _record(ctx, project)
        nets_now, cts_now = _now(ctx)
        plan = topology_plan.plan_down(rec, nets_now, cts_now)
        if plan.empty():
            if not rec.empty() and not dry_run:
                with ctx.change():
                    ctx.store.delete_meta(META_PREFIX + project)
            return plan, []
        _remove_batch(ctx, plan, project, forget=True)
        return plan, list(ctx.printed)
    finally:
        ctx.close()


def projects(ctx) -> dict[str, dict]:
    """Every project with a record: name -> {"networks": [...], "containers": [...]}."""
    rows = ctx.store.db.execute("SELECT key FROM meta WHERE key LIKE ?", (META_PREFIX + "%",)).fetchall()
    out = {}
    for (key,) in rows:
        rec = _record(ctx, key[len(META_PREFIX):])
        out[rec.project] = {"networks": sorted(rec.networks), "containers": sorted(rec.containers)}
    return out


def scene(ctx):
    """What exists now, for `netkit topology`: kernel objects read back, joined with the state."""
    from netkit import topology_view
    from netkit.kernel import inventory
    from netkit.kernel.nsexec import ETC_NETNS
    import os

    inv = inventory.read_all()
    dns = {ns: inventory.nameservers(os.path.join(ETC_NETNS, ns)) for ns in inv["netns"]}
    return topology_view.build(inv, ctx.store.networks(), ctx.store.containers(), dns)
