"""The names created in a directory while a block runs, from inotify: no polling, so that a name
that lives for a millisecond (a staging netns pin, say) is caught too."""
from __future__ import annotations

import ctypes
import os
import struct
from contextlib import contextmanager

IN_CREATE = 0x100
IN_MOVED_TO = 0x80
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name


@contextmanager
def created_names(directory: str):
    """Yields a list that, once the block ends, holds every name created in `directory` meanwhile."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    names: list[str] = []
    try:
        if libc.inotify_add_watch(fd, directory.encode(), IN_CREATE | IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
        yield names
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            i = 0
            while i < len(data):
                _, _, _, length = EVENT.unpack_from(data, i)
                names.append(data[i + EVENT.size:i + EVENT.size + length].rstrip(b"\0").decode())
                i += EVENT.size + length
    finally:
        os.close(fd)
