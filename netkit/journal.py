"""The intent journal: before a change touches the kernel, what it is about to do is written to
STATE_DIR/intent.json (fsync'd), so that a change killed half-way can be finished or undone.

One change writes one journal: a token, the kernel steps it applies (`apply`, written before each
batch runs) and the deletions it runs once the state is committed (`remove`). The same token is
written into the state (meta "intent") in the change's own transaction, so after a crash:
- token not in the state: the change never committed -> roll back: undo the `apply` steps
  (deletions of what they made; each tolerates objects already gone or never made);
- token in the state: it committed -> roll forward: run the `remove` steps.
Firewall rules and sysctls are not rolled here: the reconciler makes them match the state anyway.
The journal is deleted when the change is complete.

What it costs (docs/facts.md, "Engine fixed cost"): a change writes the journal only when it gains
a step recovery acts on (`needed()`), so a create writes it once, a publish never; each write is
one fdatasync. Durability is sized to what the journal protects: kernel objects, and none of them
survives a reboot. Against a killed process the rename alone is enough (the page cache survives);
the fdatasync before the rename is there so that a journal seen after a power loss is whole (a
torn one would read as damaged and stop every command), not so that it is seen at all: a journal
a power loss drops (no folder fsync after the rename) or brings back (no folder fsync after the
unlink) names only deletions of objects the reboot removed, which recovery tolerates.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

from netkit import ops
from netkit.errors import EnvError

FILE = "intent.json"
META = "intent"
# Steps a rollback or roll-forward acts on: objects with names (the rest is re-derived from state).
_KINDS = {cls.__name__: cls for cls in (ops.NetnsAdd, ops.NetnsAttach, ops.BridgeAdd, ops.AddrAdd, ops.EndpointAdd,
                                          ops.UtsAdd, ops.LinkDel, ops.NetnsDel, ops.UtsDel, ops.BridgeDel,
                                          ops.AddrDel)}


def path(directory: str) -> str:
    return os.path.join(directory, FILE)


def encode(step) -> dict:
    if type(step).__name__ in _KINDS:
        return {"op": type(step).__name__, **dataclasses.asdict(step)}
    return {"op": type(step).__name__, "text": (step.render() or [""])[0]}


def decode(item: dict):
    cls = _KINDS.get(item.get("op"))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in item.items() if k in names})


def needed(steps) -> bool:
    """Whether steps hold one that recovery acts on (a rules-only batch needs no journal write)."""
    return any(type(s).__name__ in _KINDS for s in steps)


def write(directory: str, token: str, command: str, apply: list, remove: list) -> None:
    """Replace the journal atomically (a crash leaves the old one or the new one, whole)."""
    data = {"token": token, "command": command, "started": time.time(),
            "apply": [encode(s) for s in apply], "remove": [encode(s) for s in remove]}
    _durable_write(path(directory), json.dumps(data).encode(), sync_dir=False)


def _durable_write(target: str, data: bytes, sync_dir: bool = True) -> None:
    """Write, fdatasync, rename into place and (sync_dir) fsync the folder, so that the new file
    is whole after a power loss, and with sync_dir there at all. A failure (a full disk) is one
    line and leaves the previous file as it was."""
    tmp = target + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(28, "short write (disk full?)")
            os.fdatasync(fd)  # data and size; the times fsync would add are of no use here
        finally:
            os.close(fd)
        os.replace(tmp, target)
        if sync_dir:
            _fsync_dir(os.path.dirname(target))
    except OSError as err:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise EnvError(f"cannot write {target}: {err.strerror or err}; nothing was changed "
                       "(free space or fix the folder, then run the command again)") from None


def clear(directory: str) -> None:
    """Remove the journal. Not fsync'd: after a power loss a journal that comes back only names
    deletions of objects the reboot removed (see the module's docstring)."""
    try:
        os.remove(path(directory))
    except FileNotFoundError:
        return


def read(directory: str) -> dict | None:
    """The journal of an unfinished change, or None. A journal cut short by a crash while it was
    being written cannot exist (it is renamed into place), but one damaged otherwise reads as
    {"damaged": reason}."""
    try:
        with open(path(directory)) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        return {"damaged": str(err), "apply": [], "remove": [], "token": None, "command": "?"}
    return data if isinstance(data, dict) else {"damaged": "not an object", "apply": [], "remove": [],
                                                "token": None, "command": "?"}


def plan(data: dict, committed: bool) -> list:
    """The steps that finish the change: its deletions (committed) or the undo of what it made."""
    if committed:
        return [s for s in (decode(i) for i in data.get("remove", [])) if s is not None]
    undo = []
    for step in reversed([s for s in (decode(i) for i in data.get("apply", [])) if s is not None]):
        inverse = step.undo()
        if inverse is not None:
            undo.append(inverse)
    return undo


def describe(data: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data.get("started", 0)))
    made = [(decode(i).render() or ["?"])[0] if decode(i) else i.get("text", "?") for i in data.get("apply", [])]
    return f"`netkit {data.get('command', '?')}` started {started}" + (f" (first step: {made[0]})" if made else "")


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- the host's settings before netkit first changed them -----------------------------------
# Written (fsync'd) before the first change of ip_forward, the FORWARD policy or route_localnet,
# so that a kill during that very change still lets `netkit reset` put the originals back.
HOST_FILE = "host-originals.json"


def host_originals(directory: str) -> dict:
    try:
        with open(os.path.join(directory, HOST_FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_host_originals(directory: str, originals: dict) -> None:
    """Add what is not yet recorded (the first-seen value of a setting is the original)."""
    old = host_originals(directory)
    merged = {**originals, **old}
    merged["route_localnet_was"] = {**(originals.get("route_localnet_was") or {}),
                                    **(old.get("route_localnet_was") or {})}
    if merged == old:
        return
    _durable_write(os.path.join(directory, HOST_FILE), json.dumps(merged).encode())


def clear_host_originals(directory: str) -> None:
    try:
        os.remove(os.path.join(directory, HOST_FILE))
    except FileNotFoundError:
        pass
