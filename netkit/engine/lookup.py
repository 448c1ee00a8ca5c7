"""Find a named object in the state or raise NotFound with the one line that says where to look."""
from __future__ import annotations

from typing import TYPE_CHECKING

from netkit.errors import NotFound
from netkit.model import Container, Network

if TYPE_CHECKING:
    from netkit.engine.context import Context


def container(ctx: Context, name: str) -> Container:
    c = ctx.store.container(name)
    if not c:
        raise NotFound(f"container '{name}' not found; see `netkit container ls`")
    return c


def network(ctx: Context, name: str) -> Network:
    """A network by name (the default `bridge` network is made on first use by networks.get)."""
    net = ctx.store.network(name)
    if not net:
        raise NotFound(f"network '{name}' not found; see `netkit network ls`")
    return net
