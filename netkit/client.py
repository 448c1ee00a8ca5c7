"""The `netkit` and `netkit-cni` commands' entry points: hand the command to a warm netkitd when
one serves this machine, otherwise run it in this process.

Standard library only up to the decision (the daemon's whole point is to skip ~200 ms of
imports). A command is forwarded when it is on FORWARDED, the caller is root, the socket
answers, and the daemon accepts the request: same netkit version, same namespaces. Whatever
goes wrong before the daemon says "started" leaves nothing done, so the command then simply
runs here. After "started" the command is the daemon's: Ctrl-C and friends are passed on to
the process running it, and its exit status becomes this process's.
"""
from __future__ import annotations

import os
import _signal as signal  # the C module: signal.py builds enums worth ~5 ms of start-up
import _socket as socket  # the same for socket.py
import sys

from netkit.daemon import protocol

# Top-level commands a daemon may run. An allow-list: anything else (exec replaces the process,
# sandbox and trace own the terminal for long, daemon manages the daemon itself, and commands
# added later) runs in-process until someone decides otherwise.
FORWARDED = {"network", "container", "bridge", "publish", "unpublish", "port", "rules", "doctor", "reset",
             "attach", "config", "--help"}
# Signals a person or a supervisor sends to "the netkit command": they go to the process that
# runs it in the daemon, which then ends exactly as it would have here (e.g. Ctrl-C: undo, 130).
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
OFF_VALUES = {"0", "off", "no", "false"}


def forwardable(argv: list[str]) -> bool:
    return not argv or argv[0] in FORWARDED


def _stream_info(stream) -> dict:
    return {"encoding": getattr(stream, "encoding", None), "errors": getattr(stream, "errors", None)}


def _request(program: str, argv: list[str]) -> dict:
    mask = os.umask(0)
    os.umask(mask)
    main = sys.modules.get("__main__")
    return {
        "program": program,
        "argv": argv,
        "argv0": sys.argv[0] if sys.argv else program,
        # click names itself `python -m netkit` or `netkit` from these two: the daemon's
        # worker recreates them, so usage lines read the same as in-process ones.
        "main_package": getattr(main, "__package__", None),
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "umask": mask,
        "ns": protocol.namespaces(),
        "fingerprint": protocol.fingerprint(),
        "stdio": [_stream_info(s) for s in (sys.stdin, sys.stdout, sys.stderr)],
    }


def forward(program: str, argv: list[str]) -> int | None:
    """The command's exit code once the daemon ran it, or None if it did not (run it here)."""
    if os.environ.get("NETKIT_DAEMON", "").lower() in OFF_VALUES or os.geteuid() != 0:
        return None
    try:
        request = _request(program, argv)  # before connecting: the daemon's child waits on no one
    except (OSError, ValueError):  # e.g. a deleted working directory: in-process says it best
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(protocol.socket_path())
        protocol.send(sock, request, [0, 1, 2])
        reply, _ = protocol.recv(sock)
    except (OSError, protocol.ProtocolError, ValueError):
        sock.close()
        return None
    if reply and "exit" in reply:  # it ran, and its process ended before it could say "started"
        sock.close()
        return int(reply["exit"])
    if not reply or "started" not in reply:
        sock.close()
        return None
    return _wait(sock, int(reply["started"]))


def _wait(sock: socket.socket, pid: int) -> int:
    def pass_on(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED_SIGNALS:
        if signal.getsignal(sig) != signal.SIG_IGN:  # ignored here (nohup, `cmd &`): ignored there too
            signal.signal(sig, pass_on)
    while True:
        try:
            reply, _ = protocol.recv(sock)
        except InterruptedError:
            continue
        except (OSError, protocol.ProtocolError):
            reply = None
        if reply is None:
            print("netkit: netkitd stopped while running this command; its outcome is unknown: "
                  "check with `netkit doctor`", file=sys.stderr)
            return 1
        if "exit" in reply:
            return int(reply["exit"])


def _exit_now(code: int) -> None:
    """End with the daemon's exit status, skipping the interpreter's teardown (a few ms of
    freeing modules): this process wrote nothing but what it flushes here."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code & 0xFF)


def main() -> None:
    """`netkit`: forwarded to netkitd, or the Typer application in this process."""
    argv = sys.argv[1:]
    if forwardable(argv):
        code = forward("netkit", argv)
        if code is not None:
            _exit_now(code)
    from netkit.cli.main import run

    run()


def cni_main() -> None:
    """`netkit-cni`: the CNI plugin, run by netkitd when it is up (the runtime waits on us)."""
    code = forward("cni", sys.argv[1:])
    if code is not None:
        _exit_now(code)
    from netkit.cni.plugin import main as plugin_main

    plugin_main()
