"""The intent journal: before a change touches the kernel, what it is about to do is written to
STATE_DIR/intent.db, so that a change killed half-way can be finished or undone.

One change writes one journal: a token, the kernel steps it applies (`apply`, written before each
batch runs) and the deletions it runs once the state is committed (`remove`). The same token is
written into the state (meta "intent") in the change's own transaction, so after a crash:
- token not in the state: the change never committed -> roll back: undo the `apply` steps
  (deletions of what they made; each tolerates objects already gone or never made);
- token in the state: it committed -> roll forward: run the `remove` steps.
Firewall rules and sysctls are not rolled here: the reconciler makes them match the state anyway.
The journal is deleted when the change is complete.

Where and how durably (docs/facts.md, "Engine fixed cost"): the journal is the one row of a small
SQLite database of its own (the state's database is inside the change's open transaction, which
this must not wait for), in WAL mode with synchronous=NORMAL. A write is a commit that appends to
the WAL with write(2): no fsync, no file made, renamed or unlinked (on this loaded machine those
cost 3-12 ms each, three to seven times per change). That is enough, because of what the journal
protects: kernel objects, none of which survives a reboot.
- A killed process: its commits are in the WAL in the page cache; the next change reads them.
- A power loss: SQLite keeps the database whole (the WAL's checksums end it at the last complete
  commit); the newest commits may be lost. A journal lost (or a cleared one come back) then names
  only objects the reboot removed, and every step recovery runs tolerates objects that are gone.
  What must not happen, a torn journal that reads as damaged and stops every command, cannot.
A change also writes the journal only when it gains a step recovery acts on (`needed()`): a
create writes it once, a publish never. An intent.json left by an older netkit is still read.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time

from netkit import ops
from netkit.errors import EnvError

FILE = "intent.db"
LEGACY_FILE = "intent.json"  # what netkit before the SQLite journal wrote (read, then removed)
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


# One connection per state folder and process (a fork, e.g. the daemon's workers, opens its own);
# re-opened if the file was replaced or removed meanwhile.
_CONNECTIONS: dict[str, tuple[int, tuple, sqlite3.Connection]] = {}
_INHERITED: list[sqlite3.Connection] = []


def _identity(target: str) -> tuple | None:
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns  # ctime too: a new file may get a freed inode


def _db(directory: str, create: bool) -> sqlite3.Connection | None:
    target = path(directory)
    ident = _identity(target)
    cached = _CONNECTIONS.get(directory)
    if cached is not None and cached[0] == os.getpid() and cached[1] == ident:
        return cached[2]
    if cached is not None:
        del _CONNECTIONS[directory]
        if cached[0] == os.getpid():
            cached[2].close()  # the file was removed or replaced
        else:  # a forked child: the parent's handle is not for it to close (nor to collect)
            _INHERITED.append(cached[2])
    if ident is None and not create:
        return None
    db = sqlite3.connect(target, isolation_level=None, timeout=30, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # see the module's docstring
        db.execute("CREATE TABLE IF NOT EXISTS intent (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL)")
    except BaseException:
        db.close()
        raise
    _CONNECTIONS[directory] = (os.getpid(), _identity(target), db)
    return db


def write(directory: str, token: str, command: str, apply: list, remove: list) -> None:
    """Replace the journal in one commit (a crash leaves the old one or the new one, whole). A
    failure (a full disk) is one line and leaves the previous journal as it was."""
    data = {"token": token, "command": command, "started": time.time(),
            "apply": [encode(s) for s in apply], "remove": [encode(s) for s in remove]}
    try:
        _db(directory, create=True).execute("INSERT OR REPLACE INTO intent VALUES (1, ?)", (json.dumps(data),))
    except sqlite3.Error as err:
        raise EnvError(f"cannot write {path(directory)}: {err}; nothing was changed "
                       "(free space or fix the folder, then run the command again)") from None


def _durable_write(target: str, data: bytes) -> None:
    """Write, fsync, rename into place, fsync the folder (host originals: written once, before
    netkit first changes the host). A failure (a full disk) is one line and leaves the previous
    file as it was."""
    tmp = target + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(28, "short write (disk full?)")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _fsync_dir(os.path.dirname(target))
    except OSError as err:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise EnvError(f"cannot write {target}: {err.strerror or err}; nothing was changed "
                       "(free space or fix the folder, then run the command again)") from None


def clear(directory: str) -> None:
    legacy = os.path.join(directory, LEGACY_FILE)
    if os.path.exists(legacy):
        os.remove(legacy)
        _fsync_dir(directory)
    try:
        db = _db(directory, create=False)
        if db is not None:
            db.execute("DELETE FROM intent")
    except sqlite3.Error as err:
        raise EnvError(f"cannot write {path(directory)}: {err}; run the command again "
                       "(free space or fix the folder)") from None


def _damaged(reason: str) -> dict:
    return {"damaged": reason, "apply": [], "remove": [], "token": None, "command": "?"}


def read(directory: str) -> dict | None:
    """The journal of an unfinished change, or None. A journal cut short by a crash while it was
    being written cannot exist (one commit), but one damaged otherwise reads as {"damaged": reason}."""
    try:
        with open(os.path.join(directory, LEGACY_FILE)) as f:
            data = json.load(f)
    except FileNotFoundError:
        try:
            db = _db(directory, create=False)
            row = db.execute("SELECT data FROM intent WHERE id = 1").fetchone() if db is not None else None
        except sqlite3.OperationalError as err:  # the environment (a full disk: no room for the WAL index)
            raise EnvError(f"cannot read {path(directory)}: {err}; nothing was changed "
                           "(free space or fix the folder, then run the command again)") from None
        except sqlite3.Error as err:  # "file is not a database", malformed ...
            return _damaged(str(err))
        if row is None:
            return None
        try:
            data = json.loads(row[0])
        except ValueError as err:
            return _damaged(str(err))
    except (OSError, ValueError) as err:
        return _damaged(str(err))
    return data if isinstance(data, dict) else _damaged("not an object")


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
