"""A throwaway world of several hosts: `netkit sandbox --hosts N [-- CMD]` and, from inside it,
`netkit sandbox on hK -- CMD`.

Inside a sandbox of its own (new network, mount and PID namespaces, as netkit/sandbox.py makes),
the sandbox's netns becomes the underlay switch: a bridge `underlay` holding 198.18.1.1, where an
etcd server (Debian's etcd-server) listens, and the `outside` host at 198.18.1.2. Each host hK
has its own network, mount and UTS namespaces (hostname hK), its own tmpfs /run/netns,
/run/netkit and /etc/netns, its own netkit state folder and config file (cluster_store,
cluster_advertise), and an `uplink` 198.18.1.1K on the underlay.

A host is a `sleep infinity` process that holds its namespaces; `on hK` enters them through
/proc/PID/ns/*. The hosts share the sandbox's PID namespace on purpose: a mount namespace can
be pinned only by a bind mount in an older mount namespace, which the other hosts cannot see,
and a process may enter only its own or a child PID namespace, never a sibling's; through a
shared /proc every host can reach every other one (docs/multihost.md, "The multi-host sandbox").
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from netkit import sandbox as sb
from netkit.errors import EnvError, UserError
from netkit.kernel import nsutil

HOSTS_DIR = "/run/netkit-hosts"  # tmpfs seen by every host: the registry, etcd's data and logs
REGISTRY = os.path.join(HOSTS_DIR, "cluster.json")
UNDERLAY = "underlay"
PREFIX = 24
STORE_ADDR = "198.18.1.1"  # the sandbox's own address on the underlay; etcd listens here
OUTSIDE_ADDR = "198.18.1.2"
STORE_PORT = 2379
STORE_URL = f"etcd://{STORE_ADDR}:{STORE_PORT}"
MAX_HOSTS = 9
STORE_READY_TIMEOUT = 15.0


def host_address(index: int) -> str:
    return f"198.18.1.{10 + index}"


def _resolv_text() -> str:
    return f"# netkit multi-host sandbox: the outside host plays the upstream resolver\nnameserver {OUTSIDE_ADDR}\n"


class Cluster:
    """Builds and tears down the hosts, the underlay and the store, from the sandbox's own
    namespaces (its PID 1, or a test process that stepped into a fresh netns)."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self.hosts: dict[str, dict] = {}
        self.store: dict = {}

    # ---- building -------------------------------------------------------------------------

    def build(self, count: int) -> None:
        from netkit.kernel import netns, underlay

        os.makedirs(HOSTS_DIR, exist_ok=True)
        nsutil.mount("tmpfs", HOSTS_DIR, "tmpfs", nsutil.MS_NOSUID | nsutil.MS_NODEV, "mode=755")
        underlay.make_switch(UNDERLAY, STORE_ADDR, PREFIX)
        fd, sock = netns.create(sb.OUTSIDE)
        os.close(fd)
        sock.close()
        underlay.plug(UNDERLAY, sb.OUTSIDE, netns.netns_path(sb.OUTSIDE), "eth0", OUTSIDE_ADDR, PREFIX)
        self.start_store()
        for k in range(1, count + 1):
            self._add_host(f"h{k}", host_address(k))
        self._save()

    def _add_host(self, name: str, address: str) -> None:
        from netkit.kernel import underlay

        folder = os.path.join(self.state_dir, name)
        os.makedirs(os.path.join(folder, "state"))
        config = os.path.join(folder, "config.json")
        with open(config, "w") as fh:
            json.dump({"cluster_store": STORE_URL, "cluster_advertise": address}, fh, indent=2)
        pid = _spawn_host(name)
        underlay.plug(UNDERLAY, name, f"/proc/{pid}/ns/net", sb.UPLINK, address, PREFIX)
        self.hosts[name] = {"pid": pid, "address": address, "state_dir": os.path.join(folder, "state"),
                            "config": config}

    def _save(self) -> None:
        doc = {"root_pid": os.getpid(), "store": self.store, "hosts": self.hosts, "state_dir": self.state_dir}
        tmp = REGISTRY + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=2)
        os.replace(tmp, REGISTRY)

    # ---- the store ------------------------------------------------------------------------

    def start_store(self) -> None:
        """Start etcd on the underlay (its data in the sandbox's tmpfs) and wait until it answers."""
        from netkit import programs
        from netkit.cluster.etcd import Etcd, StoreUnavailable

        etcd = programs.require("etcd")
        peer = "http://127.0.0.1:2380"
        argv = [etcd, "--name", "store", "--data-dir", os.path.join(HOSTS_DIR, "etcd"),
                "--listen-client-urls", f"http://{STORE_ADDR}:{STORE_PORT},http://127.0.0.1:{STORE_PORT}",
                "--advertise-client-urls", f"http://{STORE_ADDR}:{STORE_PORT}",
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"store={peer}", "--logger", "zap", "--log-level", "warn"]
        log = open(os.path.join(HOSTS_DIR, "etcd.log"), "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self._store_proc = proc
        self.store = {"url": STORE_URL, "pid": proc.pid}
        client = Etcd(STORE_URL, timeout=1.0)
        deadline = time.monotonic() + STORE_READY_TIMEOUT
        while True:
            try:
                client.status()
                break
            except StoreUnavailable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise EnvError(f"etcd did not start: see {HOSTS_DIR}/etcd.log") from None
                time.sleep(0.05)
        client.close()
        if self.hosts:
            self._save()

    def stop_store(self, sig: int = signal.SIGKILL) -> None:
        """Stop etcd (by default as a crash would: SIGKILL); its data stays for start_store()."""
        proc = getattr(self, "_store_proc", None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait()
        self.store = {"url": STORE_URL, "pid": None}
        self._save()

    # ---- tearing down ---------------------------------------------------------------------

    def host_pids(self, name: str) -> list[int]:
        """Every process living in host `name` (its mount namespace), the host's own init included."""
        try:
            target = os.stat(f"/proc/{self.hosts[name]['pid']}/ns/mnt")
        except (KeyError, FileNotFoundError):
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    st = os.stat(f"/proc/{entry}/ns/mnt")
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                    pids.append(int(entry))
        return pids

    def kill_host(self, name: str) -> None:
        """The host dies: every process in it, its namespaces with them, its cable pulled."""
        from netkit.kernel import underlay

        for pid in self.host_pids(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        underlay.unplug(name)

    def destroy(self) -> None:
        for name in list(self.hosts):
            self.kill_host(name)
        self.stop_store()
        try:
            nsutil.umount(HOSTS_DIR, nsutil.MNT_DETACH)
        except OSError:
            pass


def _ipv4_only() -> None:
    """IPv6 off in this netns before any link exists: the underlay then carries no router or
    neighbour solicitations, only what the hosts send on purpose (VXLAN, the store's TCP)."""
    for scope in ("all", "default"):
        with open(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6", "w") as fh:
            fh.write("1")


def _spawn_host(name: str) -> int:
    """Fork the process that holds host `name`'s namespaces; its PID once they are ready."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            nsutil.unshare(nsutil.CLONE_NEWNET | nsutil.CLONE_NEWNS | nsutil.CLONE_NEWUTS)
            _ipv4_only()
            nsutil.mount(None, "/", None, nsutil.MS_REC | nsutil.MS_PRIVATE)
            sb.mount_private_dirs()
            with open(sb.SANDBOX_RESOLV, "w") as fh:
                fh.write(_resolv_text())
            nsutil.sethostname(name)
            nsutil.set_link_up("lo")
            os.write(w, b"R")
            os.close(w)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.execvp("sleep", ["sleep", "infinity"])
        except BaseException as err:  # noqa: BLE001 - a forked child must never return
            os.write(w, f"E{err}".encode())
        os._exit(1)
    os.close(w)
    answer = os.read(r, 500)
    os.close(r)
    if answer != b"R":
        raise EnvError(f"cannot make host {name}: {answer[1:].decode(errors='replace') or 'it died'}")
    return pid


# ---- entering a host ----------------------------------------------------------------------

def registry() -> dict:
    try:
        with open(REGISTRY) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UserError("not inside a multi-host sandbox: start one with `netkit sandbox --hosts N`") from None


def host_env(info: dict, name: str) -> dict:
    env = dict(os.environ)
    env.update({
        "NETKIT_STATE_DIR": info["state_dir"], "NETKIT_CONFIG": info["config"], "NETKIT_RUN_DIR": "/run/netkit",
        "NETKIT_SANDBOX": "1", "NETKIT_SANDBOX_PIDNS": os.readlink("/proc/self/ns/pid"),
        "NETKIT_HOST_RESOLV": sb.SANDBOX_RESOLV, "XTABLES_LOCKFILE": "/run/netkit/xtables.lock",
        "NETKIT_HOST": name, "HOSTNAME": name,
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    })
    return env


def enter(name: str) -> dict:
    """Move this single-threaded process into host `name`'s namespaces; the environment its
    commands need (own state folder and config file) is returned for exec."""
    doc = registry()
    info = doc["hosts"].get(name)
    if info is None:
        raise UserError(f"no host '{name}' in this sandbox; hosts: {' '.join(sorted(doc['hosts']))}")
    pid = info["pid"]
    try:
        fds = [(os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC), flag)
               for ns, flag in (("mnt", nsutil.CLONE_NEWNS), ("uts", nsutil.CLONE_NEWUTS), ("net", nsutil.CLONE_NEWNET))]
    except FileNotFoundError:
        raise EnvError(f"host {name} is gone (its process {pid} died)") from None
    cwd = os.getcwd()
    try:
        for fd, flag in fds:
            nsutil.setns(fd, flag)
    except OSError as err:
        raise EnvError(f"cannot enter host {name}: {err}") from None
    finally:
        for fd, _ in fds:
            os.close(fd)
    try:
        os.chdir(cwd)  # entering a mount namespace moves the cwd to its root
    except OSError:
        os.chdir("/")
    return host_env(info, name)


def run_on(args: list[str]) -> None:
    """`netkit sandbox on HOST CMD...`: exec CMD (default: a shell) inside HOST."""
    if not args:
        raise UserError("usage: netkit sandbox on HOST -- CMD [ARGS...] (hosts are h1, h2, ...)")
    env = enter(args[0])
    argv = args[1:] or [os.environ.get("SHELL", "/bin/sh")]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as err:
        raise UserError(f"cannot run {argv[0]}: {err.strerror}") from None


# ---- the sandbox command ------------------------------------------------------------------

def run(count: int, argv: list[str]) -> int:
    """`netkit sandbox --hosts N [-- CMD]`: build the world, run CMD on h1, tear it all down."""
    if not 1 <= count <= MAX_HOSTS:
        raise UserError(f"--hosts {count}: give a number of hosts from 1 to {MAX_HOSTS}")
    if os.geteuid() != 0:
        raise EnvError("netkit sandbox needs root (namespaces and mounts): try sudo")
    from netkit import programs

    programs.require("etcd")
    argv = argv or [os.environ.get("SHELL", "/bin/sh")]
    state = tempfile.mkdtemp(prefix="netkit-hosts-")
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(_enter(count, argv, state))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _enter(count: int, argv: list[str], state: str) -> int:
    try:
        nsutil.unshare(nsutil.CLONE_NEWNET | nsutil.CLONE_NEWNS | nsutil.CLONE_NEWPID)
    except OSError as err:
        print(f"netkit: cannot create namespaces for the sandbox: {err.strerror}", file=sys.stderr)
        return 1
    nsutil.mount(None, "/", None, nsutil.MS_REC | nsutil.MS_PRIVATE)
    pid = os.fork()
    if pid == 0:
        os._exit(_init(count, argv, state))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _init(count: int, argv: list[str], state: str) -> int:
    """PID 1 of the sandbox: build the hosts, run the command on h1, reap, tear down."""
    try:
        nsutil.mount("proc", "/proc", "proc", nsutil.MS_NOSUID | nsutil.MS_NODEV | nsutil.MS_NOEXEC)
        sb.mount_private_dirs()
        with open(sb.SANDBOX_RESOLV, "w") as fh:
            fh.write(_resolv_text())
        cluster = Cluster(state)
        cluster.build(count)
        child = os.fork()
        if child == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                env = enter("h1")
                os.execvpe(argv[0], argv, env)
            except OSError as err:
                print(f"netkit sandbox: cannot run {argv[0]}: {err.strerror}", file=sys.stderr)
            except Exception as err:  # noqa: BLE001
                print(f"netkit sandbox: {err}", file=sys.stderr)
            os._exit(127)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            pid, status = os.wait()
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
                cluster.destroy()
                return code
    except Exception as err:  # noqa: BLE001 - PID 1 must report, never raise
        print(f"netkit sandbox: {err}", file=sys.stderr)
        return 1
