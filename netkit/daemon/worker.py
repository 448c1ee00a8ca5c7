"""What a forked netkitd child does with one request: become the client's command.

It takes the client's stdin/stdout/stderr as its own fds 0/1/2, its environment, working
directory, umask and argv, rebuilds sys.std* the way the interpreter would have for those fds,
then runs the very entry point the client would have run in-process. Output, TTY detection,
errors and the exit status are therefore the in-process ones by construction; the daemon
reports the status to the client when it reaps this process.
"""
from __future__ import annotations

import io
import os
import signal
import sys
import types

from netkit import answer


def _stream(fd: int, writing: bool, info: dict) -> io.TextIOWrapper:
    """A text stream on fd buffered as CPython buffers its std streams (interactive stdout is
    line-buffered, stderr always is)."""
    interactive = os.isatty(fd)
    raw = io.open(fd, "wb" if writing else "rb", closefd=False)
    return io.TextIOWrapper(raw, encoding=info.get("encoding") or "utf-8", errors=info.get("errors") or "strict",
                            line_buffering=writing and (interactive or fd == 2))


def _adopt(request: dict, fds: list[int]) -> None:
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.chdir(request["cwd"])
    os.umask(int(request["umask"]))
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [request.get("argv0") or "netkit"] + list(request["argv"])
    main = types.ModuleType("__main__")
    main.__package__ = request.get("main_package")
    sys.modules["__main__"] = main
    stdio = request.get("stdio") or [{}, {}, {}]
    sys.stdin = sys.__stdin__ = _stream(0, False, stdio[0])
    sys.stdout = sys.__stdout__ = _stream(1, True, stdio[1])
    sys.stderr = sys.__stderr__ = _stream(2, True, stdio[2])


# The entry points a request may name ("netkit", "cni"), handed in by whoever starts the daemon
# (netkit.cli.daemon): the daemon runs the CLI but does not import it, so the layers stay acyclic.
PROGRAMS: dict = {}


def _program(name: str):
    return PROGRAMS[name]


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)  # sys.exit("text"), as the interpreter reports it
    return 1


def _tell(conn, message: dict) -> None:
    from netkit.daemon import protocol

    try:
        protocol.send(conn, message)
    except OSError:
        pass  # the client left; the command still runs to its end, as with nohup


def _release_stdio() -> None:
    """Close the client's stdin/stdout/stderr here, so that whoever reads the client's output
    sees its end now, not when this process is gone."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def serve(request: dict, fds: list[int], conn, done=None) -> None:
    """Run the request in this (forked) process and _exit with its status; never returns.
    `conn` is the client's connection: it hears "started" with this PID first, and the exit
    status once the output is flushed, without waiting for this process to be reaped.
    `done()`, if given, is called then too (the daemon forks its next child).

    The daemon forks with the client-forwarded signals blocked; they are let through only
    once this process has its own handlers and the client's stderr, so an early Ctrl-C is
    neither lost nor handled by the daemon's code."""
    code = 1
    answered: list[int] = []
    _tell(conn, {"started": os.getpid()})

    def answer_client(exit_code: int) -> None:
        # Once: output flushed and handed back, the exit status told. What this process does
        # after an early answer is its own business (its output goes nowhere; a failure shows
        # in `netkit doctor`).
        if answered:
            return
        answered.append(exit_code)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
                pass
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT})
        _release_stdio()
        _tell(conn, {"exit": exit_code & 0xFF})
        if done is not None:
            try:
                done()
            except OSError:
                pass

    answer.install(answer_client)
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _adopt(request, fds)
        program = _program(request["program"])
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            program()
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:
        print("netkit: interrupted", file=sys.stderr)  # as netkit.cli.main.run says it
        code = 130
    except BaseException:  # noqa: BLE001 - what the interpreter would print for an uncaught error
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        answer.install(None)
        answer_client(code)
        os._exit(code)
