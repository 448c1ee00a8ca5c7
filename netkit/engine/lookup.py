"""Find a container or network the way Docker does: by exact name, then by full ID, then by a
unique ID prefix; or raise NotFound / an ambiguity error with the one line that says what to do."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

from netkit.errors import NotFound, UserError
from netkit.model import Container, Network

if TYPE_CHECKING:
    from netkit.engine.context import Context

_HEX = re.compile(r"[0-9a-fA-F]{1,64}")
T = TypeVar("T", Container, Network)


def by_id_prefix(items: Sequence[T], ref: str) -> list[T]:
    """Objects whose ID is `ref` or starts with it (hex only, as Docker's IDs are)."""
    if not _HEX.fullmatch(ref):
        return []
    ref = ref.lower()
    exact = [o for o in items if o.id == ref]
    return exact or [o for o in items if o.id.startswith(ref)]


def _resolve(kind: str, ref: str, by_name: Callable[[str], T | None], everything: Callable[[], list[T]],
             hint: str) -> T:
    found = by_name(ref)
    if found is not None:
        return found
    # Only a hex reference can be an ID prefix: a name such as "web" or "rt-..." (every runtime
    # attachment, looked up before it is made) is not found without decoding every object.
    matches = by_id_prefix(everything(), ref) if _HEX.fullmatch(ref) else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(f"{o.name} ({o.id[:12]})" for o in matches)
        raise UserError(f"{kind} ID prefix '{ref}' is ambiguous: it matches {names}; give more characters")
    raise NotFound(f"{kind} '{ref}' not found; see `{hint}`")


def container(ctx: Context, name: str) -> Container:
    """A container by name, full ID or unique ID prefix."""
    return _resolve("container", name, ctx.store.container, ctx.store.containers, "netkit container ls")


def network(ctx: Context, name: str) -> Network:
    """A network by name, full ID or unique ID prefix (the default `bridge` network is made on
    first use by networks.get)."""
    return _resolve("network", name, ctx.store.network, ctx.store.networks, "netkit network ls")


def find_container(ctx: Context, name: str) -> Container | None:
    """Like container(), but None when nothing matches (an ambiguous prefix still raises)."""
    try:
        return container(ctx, name)
    except NotFound:
        return None
