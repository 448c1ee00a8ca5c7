"""libnftables through ctypes: nft commands run in-process, one transaction per call.

`nft -f -` costs a process start per change; the library it is built on (libnftables.so.1,
Debian package libnftables1) takes the same text in-process. A context opens its netlink socket
in the network namespace of the calling thread, so one context is kept per netns (by the
inode of /proc/thread-self/ns/net), like kernel/firewall.py's raw sockets.
"""
from __future__ import annotations

import ctypes
import json
import os

from netkit.errors import EnvError, KernelError

SONAME = "libnftables.so.1"
OUTPUT_HANDLE = 1 << 3
OUTPUT_JSON = 1 << 4

_lib = None
_contexts: dict[int, int] = {}
_MAX_CONTEXTS = 8


def load():
    """The library, or EnvError naming the package."""
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL(SONAME)
        except OSError:
            raise EnvError(f"{SONAME} not found: install the Debian package 'libnftables1' "
                           "(`scripts/bootstrap.sh` installs everything netkit uses)") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        for fn in (lib.nft_ctx_buffer_output, lib.nft_ctx_buffer_error):
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_int
        for fn in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        _lib = lib
    return _lib


def _context() -> int:
    lib = load()
    ns = os.stat("/proc/thread-self/ns/net").st_ino
    ctx = _contexts.get(ns)
    if ctx is None:
        while len(_contexts) >= _MAX_CONTEXTS:
            lib.nft_ctx_free(_contexts.pop(next(iter(_contexts))))
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise KernelError("libnftables: cannot create a context")
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        _contexts[ns] = ctx
    return ctx


def run(script: str, flags: int = 0) -> tuple[int, str, str]:
    """Run nft commands (one transaction); (return code, output, error text)."""
    lib = load()
    ctx = _context()
    lib.nft_ctx_output_set_flags(ctx, flags)
    rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
    out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
    err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
    return rc, out, err


def check(script: str, flags: int = 0) -> str:
    rc, out, err = run(script, flags)
    if rc != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        # libnftables says "Error: ..." then the offending command: both are needed to understand it.
        where = f" in `{lines[1].strip()}`" if len(lines) > 1 else ""
        raise KernelError(f"nftables: {lines[0] if lines else 'failed'}{where}; nothing was changed "
                          "(the script runs as one transaction)")
    return out


def list_json(what: str) -> dict | None:
    """`nft -j list WHAT` as data; None when the object does not exist."""
    rc, out, err = run(f"list {what}", OUTPUT_JSON)
    if rc != 0:
        if "No such file or directory" in err:
            return None
        raise KernelError(f"nftables: list {what}: {err.strip().splitlines()[0] if err.strip() else rc}")
    return json.loads(out) if out.strip() else {"nftables": []}
