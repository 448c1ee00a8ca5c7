"""netkitd: a fork server that keeps netkit's imports warm and runs each request in a child.

The parent imports the Typer application, the engine, pyroute2 and python-iptables once, then
keeps one child forked ahead ("the spare"), waiting on the netkit socket. The spare accepts the
next client itself, checks who is asking and runs the command: neither a fork nor a wake-up of
the parent lies between a client and its command. The parent forks the next spare once that
command is done (a fork in the middle of it would compete with it for the CPU), or at once when
another client arrives first. The parent never opens the state, a netlink socket or an
iptables table itself (an iptc.Table is a per-process singleton that must not be shared across a
fork: docs/facts.md "python-iptables"), so every child starts as clean as a fresh `netkit`
process, minus the imports. Children run concurrently; the state's file lock stays the one
thing that serialises changes, exactly as between separate processes.

Children tell the parent on a datagram socket: "run" with the client's connection (the parent
reports the exit status if the child dies before it can), "done" (the command is over: fork the
next spare now), "status" with the connection (the parent answers: it holds the counters),
"stale" (netkit changed on disk: re-exec), "gone" (nothing to run). Whatever a spare says first
tells the parent it is taken. Docker plugin requests are accepted by the parent and forked as
before.

Listeners: the netkit socket ($NETKIT_RUN_DIR/netkit.sock, mode 0600, root peers only) and
optionally Docker's remote network driver socket (HTTP; see netkit.dockerplugin). Sockets can
also be inherited from systemd (LISTEN_FDS) or from the previous image after a re-exec.
"""
from __future__ import annotations

import gc
import os
import select
import selectors
import signal
import socket
import struct
import sys
import time

from netkit.daemon import protocol

KIND_NETKIT = "netkit"
KIND_DOCKER = "docker"
REQUEST_TIMEOUT = 2.0  # a client sends its request right after connecting
STOP_GRACE = 30.0  # how long a stop waits for commands in flight
FORWARDED_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}
INHERITED_ENV = "NETKIT_DAEMON_FDS"  # "fd:kind:owned,..." handed to our own re-exec


def log(message: str) -> None:
    print(f"netkitd[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def warm_up(app) -> None:
    """Import what commands would import, so that a forked child finds it loaded (the caller
    has imported the CLI with every command: `app` is its Typer application)."""
    from netkit.engine import bridges, containers, context, doctor, networks, publish  # noqa: F401
    from netkit.kernel import conntrack, firewall, iptc_loader, links, netns, nsexec, uts, warm  # noqa: F401

    iptc_loader.load()  # the module only: no table is opened here
    warm.preload_netlink()
    warm.preload_host_facts()
    warm.preload_libraries()
    _import_everything()
    _prebuild_click_command(app)
    # Everything imported so far lives as long as the daemon: out of the collector's sight, a
    # child's garbage collections no longer touch (and so copy) every page of the parent's heap.
    gc.collect()
    gc.freeze()


def _import_everything() -> None:
    """Every netkit module a command may import lazily (a create alone pulls in a dozen): once
    here rather than in every child, where each costs a compile when no bytecode was written
    (PYTHONDONTWRITEBYTECODE, a read-only tree) and an exec anyway. Modules run no code at import
    but definitions; the __main__ ones, which do, are left out."""
    import importlib
    import pkgutil

    import netkit

    for info in pkgutil.walk_packages(netkit.__path__, "netkit."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except Exception as err:  # noqa: BLE001 - a command that needs it will say what is wrong
            log(f"warm-up: {info.name} not imported: {err}")


def _prebuild_click_command(app) -> None:
    """Typer turns the app into click objects on every call (~7 ms for all commands); the
    result depends only on the imported command modules, so build it once here."""
    import typer.main

    built = typer.main.get_command(app)
    original = typer.main.get_command

    def get_command(typer_instance):
        return built if typer_instance is app else original(typer_instance)

    typer.main.get_command = get_command


def _capabilities(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def peer(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the connected process, from the kernel (SO_PEERCRED)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


def bind_unix(path: str, mode: int) -> socket.socket:
    """A listening socket at path, refusing to steal it from a live daemon."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # left by a daemon that died: nobody listens
        else:
            raise OSError(f"{path} is served by a running daemon (see `netkit daemon status`)")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)  # created with the right mode: no window where it is wider
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.listen(128)
    return sock


def _kind_of(sock: socket.socket) -> str:
    name = sock.getsockname()
    name = name.decode() if isinstance(name, bytes) else name
    return KIND_DOCKER if "/docker/plugins/" in (name or "") else KIND_NETKIT


def inherited_sockets() -> tuple[list[tuple[socket.socket, str]], list[str]]:
    """Listening sockets from our own previous image, or from systemd's socket activation, and
    the paths of those we bound ourselves (to remove when we stop)."""
    found, owned = [], []
    spec = os.environ.pop(INHERITED_ENV, "")
    for item in filter(None, spec.split(",")):
        fd, kind, mine = item.split(":")
        sock = socket.socket(fileno=int(fd))
        found.append((sock, kind))
        if mine == "1":
            owned.append(_name(sock))
    if not found and os.environ.get("LISTEN_PID") == str(os.getpid()):
        for fd in range(3, 3 + int(os.environ.get("LISTEN_FDS", "0"))):
            sock = socket.socket(fileno=fd)
            found.append((sock, _kind_of(sock)))
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(key, None)  # not for our children
    for sock, _ in found:
        sock.set_inheritable(False)
    return found, owned


class Daemon:
    def __init__(self, listeners: list[tuple[socket.socket, str]], pidfile: str | None, argv: list[str],
                 owned_paths: list[str], dns=None):
        self.listeners = listeners
        self.pidfile = pidfile
        self.argv = argv  # to re-exec ourselves with
        self.owned_paths = owned_paths  # sockets we bound (systemd's stay)
        self.fingerprint = protocol.fingerprint()
        self.namespaces = protocol.namespaces()
        self.capabilities = _capabilities("self")
        self.children: dict[int, socket.socket | None] = {}  # running requests (+ connection)
        self.spare: int | None = None  # the child waiting for the next netkit client
        self.spare_quit: int | None = None  # closing it tells an idle spare to go
        self.busy: set[int] = set()  # children between "run" and "done" (their command runs)
        self.watching = False  # the parent watches the netkit socket (no spare, a command runs)
        self.reaped_early: dict[int, int] = {}  # exit codes of children reaped before their "run"
        self.started = time.time()
        self.served = 0
        self.stopping = False
        self.reexec = False
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.notify_r, self.notify_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.notify_r.setblocking(False)
        self.dns = dns  # DnsHosting: the one process serving every network's DNS (None: not ours)

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> int:
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # its wake-up byte is what matters
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.selector.register(self.notify_r, selectors.EVENT_READ, "notify")
        for sock, kind in self.listeners:
            if kind == KIND_DOCKER:  # netkit clients are accepted by the spare
                self.selector.register(sock, selectors.EVENT_READ, kind)
        if self.pidfile:
            _write_pidfile(self.pidfile)
        if self.dns is not None:
            self._watch_dns(self.dns.start())
        log(f"serving {', '.join(_name(s) for s, _ in self.listeners)} (version {self.fingerprint})")
        deadline = None
        while True:
            if (self.stopping or self.reexec) and deadline is None:
                for sock, kind in self.listeners:
                    if kind == KIND_DOCKER:
                        self.selector.unregister(sock)
                self._watch(False)
                self._dismiss_spare()
                deadline = time.monotonic() + STOP_GRACE
            if deadline is not None and (not (self.children or self.spare)
                                         or time.monotonic() > deadline):
                break
            if deadline is None and self.spare is None:
                self._spare_when_idle()
            if self.dns is not None and deadline is None and self.dns.due():
                self._watch_dns(self.dns.start())
            waiting_dns = self.dns is not None and self.dns.pidfd is None
            for key, _ in self.selector.select(timeout=1.0 if deadline or self.spare is None or waiting_dns else None):
                if key.data == "wake":
                    _drain(self.wake_r)
                elif key.data == "notify":
                    self._notified()
                elif key.data == "dnshost":  # the DNS host died
                    self.selector.unregister(key.fileobj)
                    if deadline is None:
                        self._watch_dns(self.dns.exited())
                elif key.data == "waiting":  # a client came while a command runs: no more waiting
                    self._watch(False)
                    if self.spare is None and deadline is None:
                        self._fork_spare()
                else:
                    self._accept(key.fileobj, key.data)
            self._reap()
        if self.dns is not None:
            self.dns.stop(give_back=not self.reexec)
        if self.reexec:
            self._reexec()
        self._cleanup()
        return 0

    def _watch_dns(self, pidfd: int | None) -> None:
        if pidfd is not None:
            self.selector.register(pidfd, selectors.EVENT_READ, "dnshost")

    def _on_stop(self, signum, _frame) -> None:
        self.stopping = True

    def _cleanup(self) -> None:
        for path in self.owned_paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        if self.pidfile:
            try:
                with open(self.pidfile) as fh:
                    if fh.read().strip() == str(os.getpid()):
                        os.unlink(self.pidfile)
            except OSError:
                pass
        log("stopped")

    def _reexec(self) -> None:
        """Become the netkit now on disk, keeping the listening sockets (and, under systemd,
        the PID): clients meanwhile ran in-process, none waited."""
        spec = []
        for sock, kind in self.listeners:
            sock.set_inheritable(True)
            spec.append(f"{sock.fileno()}:{kind}:{int(_name(sock) in self.owned_paths)}")
        os.environ[INHERITED_ENV] = ",".join(spec)
        log("netkit changed on disk: re-executing")
        os.execv(sys.executable, [sys.executable, "-m", "netkit", "daemon", "run"] + self.argv)

    # -- requests -------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, kind: str) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            self._fork(conn, None, kind)  # Docker's plugin protocol (netkit clients go to the spare)
        except Exception as err:  # noqa: BLE001 - one bad client must not stop the daemon
            log(f"request failed before it started: {err}")
            conn.close()

    def _refusal(self, conn: socket.socket, request: dict, fds: list[int]) -> str | None:
        pid, uid, _gid = peer(conn)
        if uid != 0:
            return "root only"
        if self.capabilities & ~_capabilities(pid):
            return "the client holds fewer capabilities than the daemon"
        if request.get("program") not in ("netkit", "cni"):
            return f"unknown program {request.get('program')!r}"
        if request.get("fingerprint") != self.fingerprint:
            if protocol.fingerprint() != self.fingerprint:
                self.reexec = True  # we are the stale one
            return "another netkit version"
        if request.get("ns") != self.namespaces:
            return "the client runs in other namespaces"
        if len(fds) != 3:
            return "stdin, stdout and stderr were not passed"
        return None

    # -- the spare: the child that accepts the next netkit client ----------------------------

    def _fork_spare(self) -> None:
        quit_r, quit_w = os.pipe2(os.O_CLOEXEC)
        # Signals the client forwards stay pending in the child until it can handle them as
        # the command would (see worker.serve).
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
        pid = -1
        try:
            pid = os.fork()
            if pid == 0:
                os.close(quit_w)
                self._spare_child(quit_r)  # never returns
        except OSError as err:
            log(f"cannot fork a child for the next client: {err}")
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
        os.close(quit_r)
        if pid <= 0:
            os.close(quit_w)
            return
        self.spare, self.spare_quit = pid, quit_w

    def _spare_when_idle(self) -> None:
        """The next spare is forked once the running command is done (a fork in the middle of
        it competes with it for the CPU), or at once when a client arrives before that."""
        if self.busy:
            self._watch(True)
        else:
            self._watch(False)
            self._fork_spare()

    def _watch(self, on: bool) -> None:
        if on == self.watching:
            return
        for sock, kind in self.listeners:
            if kind == KIND_NETKIT:
                if on:
                    self.selector.register(sock, selectors.EVENT_READ, "waiting")
                else:
                    self.selector.unregister(sock)
        self.watching = on

    def _dismiss_spare(self) -> None:
        """Tell the idle spare to go (one that took a client meanwhile serves it to the end)."""
        if self.spare_quit is not None:
            os.close(self.spare_quit)
            self.spare_quit = None

    def _spare_child(self, quit_fd: int) -> None:
        try:
            self._close_parents_things()
            netkit_socks = [sock for sock, kind in self.listeners if kind == KIND_NETKIT]
            for sock, kind in self.listeners:
                if kind != KIND_NETKIT:
                    sock.close()
            # The parent closes its end of quit_fd to dismiss this spare, or by dying.
            ready, _, _ = select.select(netkit_socks + [quit_fd], [], [])
            if quit_fd in ready or not ready:
                os._exit(0)
            conn, _ = ready[0].accept()
            for sock in netkit_socks:
                sock.close()
            os.close(quit_fd)
            self._serve_netkit(conn)  # never returns
        except BaseException as err:  # noqa: BLE001 - one bad client must not stop the daemon
            if not isinstance(err, SystemExit):
                log(f"request failed before it started: {err}")
        finally:
            os._exit(1)

    def _tell_parent(self, message: dict, conn: socket.socket | None = None) -> None:
        data = protocol.encode(message)[4:]
        fds = [conn.fileno()] if conn is not None else []
        self.notify_w.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
                              if fds else [])

    def _serve_netkit(self, conn: socket.socket) -> None:
        """In the spare that took `conn`: the request, the checks, then the command."""
        conn.settimeout(REQUEST_TIMEOUT)
        request, fds = protocol.recv(conn, want_fds=3)
        if request is None:
            self._tell_parent({"gone": os.getpid()})
            os._exit(0)
        if request.get("program") == "status":
            self._tell_parent({"status": os.getpid()}, conn)  # the parent holds the counters
            os._exit(0)
        reason = self._refusal(conn, request, fds)
        if reason:
            for fd in fds:
                os.close(fd)
            self._tell_parent({"stale" if self.reexec else "gone": os.getpid()})
            protocol.send(conn, {"refused": reason})
            os._exit(0)
        conn.settimeout(None)
        self._tell_parent({"run": os.getpid()}, conn)
        from netkit.daemon import worker

        worker.serve(request, fds, conn, lambda: self._tell_parent({"done": os.getpid()}))

    def _notified(self) -> None:
        """Read what children said (see the module's docstring)."""
        while True:
            try:
                data, ancdata, _flags, _addr = self.notify_r.recvmsg(4096, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                return
            fds = [fd for level, kind, payload in ancdata
                   if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                   for fd in struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) - len(payload) % 4])]
            conn = socket.socket(fileno=fds[0]) if fds else None
            try:
                message = protocol.loads(data)
            except ValueError:
                message = {}
            pid = int(next(iter(message.values()), 0) or 0)
            if pid == self.spare:  # the spare took a client
                self.spare = None
                self._dismiss_spare()
            if "done" in message:
                self.busy.discard(pid)
            elif "run" in message and conn is not None:
                self.served += 1
                if pid in self.reaped_early:
                    self._report(conn, self.reaped_early.pop(pid))
                else:
                    self.busy.add(pid)
                    self.children[pid] = conn  # the exit status goes back on it if the child cannot say it
                conn = None
            elif "status" in message and conn is not None:
                try:
                    protocol.send(conn, {"status": self.status()})
                except OSError:
                    pass
            elif "stale" in message:
                self.reexec = True
            if conn is not None:
                conn.close()

    def _fork(self, conn: socket.socket, request, kind: str) -> int:
        """A child for a Docker plugin request: it answers the HTTP request itself."""
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
        pid = -1
        try:
            pid = os.fork()
            if pid == 0:
                self._in_child(conn, request, kind)  # never returns
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
        self.served += 1
        conn.close()  # the child answers the HTTP request itself
        self.children[pid] = None
        return pid

    def _close_parents_things(self) -> None:
        """In a fresh child: nothing of the parent's may stay open here (a copy of another
        client's connection would keep that client waiting until this child exits)."""
        for other in self.children.values():
            if other is not None:
                other.close()
        if self.spare_quit is not None:
            os.close(self.spare_quit)
        if self.dns is not None:
            self.dns.close_in_child()
        self.selector.close()
        signal.set_wakeup_fd(-1)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.notify_r.close()

    def _in_child(self, conn: socket.socket, request, kind: str) -> None:
        try:
            self._close_parents_things()
            for sock, _ in self.listeners:
                sock.close()
            if kind == KIND_DOCKER:
                from netkit.dockerplugin import http

                for sig in FORWARDED_SIGNALS | {signal.SIGCHLD}:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                http.serve_connection(conn)
                os._exit(0)
            from netkit.daemon import worker

            worker.serve(*request, conn)
        finally:
            os._exit(1)

    def _reap(self) -> None:
        self._notified()  # a child's "run" comes before its end: know it before reaping it
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                self.busy.clear()
                self.spare = None
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if code < 0:
                code = 128 - code  # killed by a signal: the shell's convention
            if pid == self.spare:  # died idle (or dismissed)
                self.spare = None
                self._dismiss_spare()
            self.busy.discard(pid)
            if pid not in self.children:  # its "run" may still be on its way
                self.reaped_early[pid] = code
                while len(self.reaped_early) > 64:  # it said nothing more: forget the oldest
                    self.reaped_early.pop(next(iter(self.reaped_early)))
            conn = self.children.pop(pid, None)
            if conn is not None:
                self._report(conn, code)

    @staticmethod
    def _report(conn: socket.socket, code: int) -> None:
        # Usually the child said it already and the client left (EPIPE); a client still
        # waiting learns the status here (the child was killed before it could say).
        try:
            protocol.send(conn, {"exit": code})
        except OSError:
            pass
        conn.close()

    def status(self) -> dict:
        return {"pid": os.getpid(), "uptime": round(time.time() - self.started, 1), "served": self.served,
                "running": len(self.children), "version": self.fingerprint,
                "dns_host": self.dns.status() if self.dns is not None else None,
                "sockets": {_name(s): kind for s, kind in self.listeners}}


def _name(sock: socket.socket) -> str:
    name = sock.getsockname()
    return name.decode() if isinstance(name, bytes) else str(name)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _write_pidfile(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def serve(docker_socket: str | None, pidfile: str | None, argv: list[str], programs: dict, app) -> int:
    """`netkit daemon run`: bind (or inherit) the sockets, warm up, serve until SIGTERM.
    `programs` maps a request's program name to its entry point; `app` is the CLI's Typer app."""
    from netkit.daemon import worker

    worker.PROGRAMS.update(programs)
    listeners, owned = inherited_sockets()
    if not listeners:
        path = protocol.socket_path()
        listeners.append((bind_unix(path, 0o600), KIND_NETKIT))
        owned.append(path)
        if docker_socket:
            # dockerd connects as root; 0600 keeps everyone else out here too.
            listeners.append((bind_unix(docker_socket, 0o600), KIND_DOCKER))
            owned.append(docker_socket)
    warm_up(app)
    from netkit.daemon.dnshost import DnsHosting

    return Daemon(listeners, pidfile, argv, owned, DnsHosting(protocol.run_dir())).run()
