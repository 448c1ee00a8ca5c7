"""A private Docker engine (Debian's docker.io) inside a netkit sandbox, for tests and benchmarks.

dockerd is a machine-wide daemon: by default it writes /var/lib/docker, /run/docker,
/run/containerd and /etc/docker, makes cgroups at the root of every hierarchy and programs the
firewall of the network namespace it runs in. Here every one of those lands somewhere private:

- network: the sandbox's own netns (netkit sandbox / a test's fresh netns), never the machine's;
- files: tmpfs mounted over PRIVATE_DIRS in the sandbox's mount namespace (gone with it, and
  unmounted by stop()); /run/docker is a *shared* mount so that the netns files dockerd
  bind-mounts under /run/docker/netns are seen by netkitd (the plugin opens them at Join);
- cgroups: the launcher makes one sub-cgroup per hierarchy under its own cgroup
  (.../netkit-dockerd-PID), moves dockerd into it, gives dockerd a cgroup namespace rooted there
  and a private mount of each hierarchy, so runc's "/docker/<id>" cgroups are made inside that
  sub-tree. At the end the launcher kills whatever is left in the sub-tree (only processes it
  started can be there) and removes it;
- kernel modules: dockerd's `modprobe` (bridge, br_netfilter, ...) is shadowed by /bin/false in
  its mount namespace, so it cannot load modules into the machine's kernel;
- kernel settings: /proc/sys is read-only for dockerd but for /proc/sys/net (the sandbox's netns
  own them), so it cannot raise machine-wide ones (it raises kernel.keys.root_maxkeys if low).

Use as a context manager (`with DockerBox() as box: box.docker("ps")`) or from the shell inside a
sandbox: `netkit sandbox -- .venv/bin/python scripts/dockerbox.py -- docker ps` (DOCKER_HOST set).
"""
from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import secrets
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netkit.kernel import nsutil  # noqa: E402

DOCKER = "/usr/bin/docker"  # docker.io's client: another `docker` may come first on the PATH
DOCKERD = "dockerd"
CONTAINERD = "containerd"
BUSYBOX = "/bin/busybox"  # busybox-static: a static binary is a whole image by itself
IMAGE = "netkit/busybox"
APPLETS = ("sh", "httpd", "wget", "nc", "ip", "ping", "nslookup", "cat", "sleep", "hostname", "ls")
PRIVATE_DIRS = ("/var/lib/docker", "/var/lib/containerd", "/run/docker", "/run/containerd", "/etc/docker")
SOCKET = "/run/docker/docker.sock"
HOST = "unix://" + SOCKET
PIDFILE = "/run/docker/dockerd.pid"
LOG = "/run/docker/dockerd.log"
CONTAINERD_LOG = "/run/containerd/containerd.log"
PLUGIN_SOCKET = "/run/docker/plugins/netkit.sock"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CONTAINERD_CONFIG = "/etc/docker/containerd.toml"
# Our own containerd, not the one dockerd would start: only so can the plugins that write
# outside root/state be turned off (the "opt" plugin makes /opt/containerd on the real disk).
CONTAINERD_TOML = f"""version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{CONTAINERD_SOCKET}"
"""
CGROUP_ROOT = "/sys/fs/cgroup"
CLONE_NEWCGROUP = 0x02000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
DAEMON_JSON = {
    "storage-driver": "vfs",  # tmpfs below, a tiny image: no overlay mounts to leave behind
    "iptables": True,  # the netns is the sandbox's: Docker's rules stay there
    "ip6tables": False,
    "ipv6": False,
    "userland-proxy": False,  # published ports by DNAT only, like netkit
    "exec-opts": ["native.cgroupdriver=cgroupfs"],  # no systemd here; cgroupfs under our sub-tree
    "log-driver": "none",
    "features": {"buildkit": False},
}
START_TIMEOUT = 60.0


# --- cgroups -------------------------------------------------------------------------------

def _hierarchies() -> list[tuple[str, str, str]]:
    """(mount options, mount folder under CGROUP_ROOT, our cgroup path) for each hierarchy this
    process is in, from /proc/self/cgroup. cgroup2 gets fstype "" (options) and folder "unified"
    on a hybrid machine, "" on a pure cgroup2 machine."""
    rows = []
    with open("/proc/self/cgroup") as fh:
        for line in fh.read().splitlines():
            _num, ctrls, path = line.split(":", 2)
            rows.append((ctrls, path))
    v1 = [r for r in rows if r[0]]
    out = []
    for ctrls, path in rows:
        if not ctrls:
            out.append(("", "unified" if v1 else "", path))
        else:
            out.append((ctrls, ctrls.replace("name=", ""), path))
    return out


def _mount_hierarchies() -> None:
    """Mount each hierarchy under CGROUP_ROOT, rooted at this process's cgroup namespace."""
    nsutil.mount("tmpfs", CGROUP_ROOT, "tmpfs", nsutil.MS_NOSUID | nsutil.MS_NODEV, "mode=755")
    for opts, folder, _path in _hierarchies():
        target = os.path.join(CGROUP_ROOT, folder) if folder else CGROUP_ROOT
        os.makedirs(target, exist_ok=True)
        if opts:
            data = opts if "name=" not in opts else "none," + opts
            nsutil.mount("cgroup", target, "cgroup", nsutil.MS_NOSUID | nsutil.MS_NODEV | nsutil.MS_NOEXEC, data)
        else:
            nsutil.mount("cgroup2", target, "cgroup2", nsutil.MS_NOSUID | nsutil.MS_NODEV | nsutil.MS_NOEXEC)


def _subtree_dirs(name: str) -> list[str]:
    """Our sub-cgroup in each hierarchy, as seen through the mounts of _mount_hierarchies()."""
    dirs = []
    for _opts, folder, path in _hierarchies():
        base = os.path.join(CGROUP_ROOT, folder) if folder else CGROUP_ROOT
        dirs.append(os.path.join(base, path.lstrip("/"), name))
    return dirs


def _make_cgroup(path: str) -> None:
    os.mkdir(path)
    # A v1 cpuset cgroup starts with no CPUs and no memory nodes: no task could join it.
    for knob in ("cpuset.cpus", "cpuset.mems"):
        mine = os.path.join(path, knob)
        if os.path.exists(mine):
            with open(os.path.join(os.path.dirname(path), knob)) as src, open(mine, "w") as dst:
                dst.write(src.read().strip() or "\n")


def _join(cgroup_dirs: list[str]) -> None:
    for d in cgroup_dirs:
        with open(os.path.join(d, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))


def _pids_in(cgroup_dirs: list[str]) -> set[int]:
    pids: set[int] = set()
    for top in cgroup_dirs:
        for base, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(base, "cgroup.procs")) as fh:
                        pids |= {int(p) for p in fh.read().split()}
                except OSError:
                    pass
    return pids


def _remove_subtree(cgroup_dirs: list[str]) -> list[str]:
    """rmdir every cgroup of the sub-trees, deepest first; returns those that would not go."""
    left = []
    for top in cgroup_dirs:
        if not os.path.isdir(top):
            continue
        for base, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            for _ in range(50):  # a cgroup empties a moment after its last task exits
                try:
                    os.rmdir(base)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                left.append(base)
    return left


def _shadow_modprobe() -> None:
    for path in ("/sbin/modprobe", "/usr/sbin/modprobe", "/bin/modprobe", "/usr/bin/modprobe"):
        if os.path.exists(path) and not os.path.islink(path):
            nsutil.mount("/bin/false", path, None, nsutil.MS_BIND)


def _read_only_kernel_settings() -> None:
    """/proc/sys read-only for dockerd and its children but for /proc/sys/net, which belongs to
    the sandbox's netns: dockerd would raise machine-wide settings (kernel.keys.root_maxkeys)
    when it finds them low; here it can only warn."""
    flags = nsutil.MS_NOSUID | nsutil.MS_NODEV | nsutil.MS_NOEXEC
    nsutil.mount("/proc/sys", "/proc/sys", None, nsutil.MS_BIND | nsutil.MS_REC)
    nsutil.mount(None, "/proc/sys", None, nsutil.MS_BIND | MS_REMOUNT | MS_RDONLY | flags)
    nsutil.mount("/proc/sys/net", "/proc/sys/net", None, nsutil.MS_BIND | nsutil.MS_REC)
    nsutil.mount(None, "/proc/sys/net", None, nsutil.MS_BIND | MS_REMOUNT | flags)


def launch(argv: list[str]) -> int:
    """The launcher (its own process): private cgroup sub-tree, then dockerd inside it; on
    SIGTERM stop dockerd, kill what is left in the sub-tree, remove the sub-tree."""
    name = f"netkit-dockerd-{secrets.token_hex(4)}"  # PIDs repeat across sandboxes: a random name
    nsutil.unshare(nsutil.CLONE_NEWNS)  # our cgroup mounts stay ours (the sandbox's / is private)
    _mount_hierarchies()  # still in the sandbox's cgroup namespace: the whole trees
    cgroups = _subtree_dirs(name)
    made = []
    try:
        for d in cgroups:
            _make_cgroup(d)
            made.append(d)
            _make_cgroup(os.path.join(d, "init"))
    except OSError as err:
        print(f"dockerbox: cannot make cgroup {d}: {err}", file=sys.stderr)
        _remove_subtree(made)
        return 1
    child = os.fork()
    if child == 0:
        try:
            _join(cgroups)
            nsutil.unshare(CLONE_NEWCGROUP | nsutil.CLONE_NEWNS)  # root of the namespace: our sub-cgroup
            # dockerd itself leaves the namespace root: cgroup2 lets only a cgroup without
            # processes hand controllers to children (runc's /docker/<id>).
            _join([os.path.join(d, "init") for d in cgroups])
            nsutil.umount(CGROUP_ROOT, nsutil.MNT_DETACH)
            _mount_hierarchies()  # now rooted at the sub-cgroup
            _shadow_modprobe()
            _read_only_kernel_settings()
            log = open(CONTAINERD_LOG, "w")
            subprocess.Popen([CONTAINERD, "--config", CONTAINERD_CONFIG], stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + START_TIMEOUT
            while not os.path.exists(CONTAINERD_SOCKET) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.execvp(argv[0], argv)
        except BaseException as err:  # noqa: BLE001 - the child must never return into Python
            print(f"dockerbox: cannot start {argv[0]}: {err}", file=sys.stderr)
        os._exit(127)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGTERM))
    signal.signal(signal.SIGINT, lambda *_: os.kill(child, signal.SIGTERM))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    # containerd, shims and containers outlive dockerd: all are in our sub-tree, and only there.
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 20.0)):
        deadline = time.monotonic() + grace
        while (pids := _pids_in(cgroups)) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
    left = _remove_subtree(cgroups)
    if left:
        print(f"dockerbox: cgroups left behind: {left}", file=sys.stderr)
        return 1
    return os.waitstatus_to_exitcode(status)


# --- the box -------------------------------------------------------------------------------

def _is_static(path: str) -> bool:
    """No PT_INTERP program header: the ELF binary needs no dynamic loader (64-bit little-endian)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))  # 3: PT_INTERP


class DockerBox:
    """dockerd with private files and cgroups, in the current (sandbox) namespaces."""

    def __init__(self, daemon_json: dict | None = None):
        self.daemon_json = {**DAEMON_JSON, **(daemon_json or {})}
        self.launcher: subprocess.Popen | None = None
        self.mounted: list[str] = []

    def __enter__(self) -> "DockerBox":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        from netkit import sandbox

        if not sandbox.in_sandbox():
            raise RuntimeError("dockerbox runs only inside a netkit sandbox (netkit sandbox -- ...)")
        try:
            self._start()
        except BaseException:
            self.stop()  # nothing half-made: the launcher removes its cgroups, the mounts go
            raise

    def _start(self) -> None:
        for path in PRIVATE_DIRS:
            os.makedirs(path, exist_ok=True)  # an empty folder on the real filesystem, as mount point
            nsutil.mount("tmpfs", path, "tmpfs", nsutil.MS_NOSUID | nsutil.MS_NODEV, "mode=711")
            self.mounted.append(path)
        nsutil.mount(None, "/run/docker", None, nsutil.MS_SHARED)  # dockerd's netns bind mounts must reach netkitd
        os.makedirs("/run/docker/plugins", exist_ok=True)
        with open("/etc/docker/daemon.json", "w") as fh:
            json.dump(self.daemon_json, fh)
        with open(CONTAINERD_CONFIG, "w") as fh:
            fh.write(CONTAINERD_TOML)
        argv = [DOCKERD, "--containerd", CONTAINERD_SOCKET, "--config-file", "/etc/docker/daemon.json", "--data-root", "/var/lib/docker",
                "--exec-root", "/run/docker", "--pidfile", PIDFILE, "-H", HOST]
        log = open(LOG, "w")
        self.launcher = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--launch", "--"] + argv,
                                         stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.launcher.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self.launcher.returncode}): {self.log_tail()}")
            if os.path.exists(SOCKET) and self.docker("version", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT:.0f} s: {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(LOG, errors="replace") as fh:
                return "\n".join(fh.read().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def docker(self, *args: str, check: bool = True, input: bytes | str | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run([DOCKER, "-H", HOST] + list(args), capture_output=True, input=input,
                              text=not isinstance(input, bytes), timeout=timeout)
        if check and proc.returncode != 0:
            out = proc.stdout + proc.stderr
            raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}): "
                               f"{out.decode(errors='replace') if isinstance(out, bytes) else out}")
        return proc

    def import_busybox(self) -> str:
        """A local image from busybox-static (no registry is reachable): one static binary and
        its applets as symlinks."""
        if not _is_static(BUSYBOX):
            raise RuntimeError(f"{BUSYBOX} is dynamically linked (Debian's busybox): install busybox-static, "
                               "whose binary runs in an image without a C library")
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            tar.add(BUSYBOX, arcname="bin/busybox")
            for applet in APPLETS:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
            for folder in ("www", "tmp", "etc"):
                entry = tarfile.TarInfo(folder)
                entry.type, entry.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
                tar.addfile(entry)
        self.docker("import", "--change", 'CMD ["sh"]', "--change", "ENV PATH=/bin", "-", IMAGE,
                    input=data.getvalue())
        return IMAGE

    def stop(self) -> None:
        """Stop dockerd and everything it started, then unmount the private folders."""
        try:
            if self.launcher is not None and self.launcher.poll() is None:
                self.launcher.send_signal(signal.SIGTERM)
                try:
                    self.launcher.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    self.launcher.kill()
                    self.launcher.wait()
        finally:
            for path in reversed(self.mounted):
                try:
                    nsutil.umount(path, nsutil.MNT_DETACH)
                except OSError:
                    pass
            self.mounted = []


def _main(argv: list[str]) -> int:
    if argv[:2] == ["--launch", "--"]:
        return launch(argv[2:])
    if argv[:1] == ["--"]:
        argv = argv[1:]
    with DockerBox() as box:
        box.import_busybox()
        env = dict(os.environ, DOCKER_HOST=HOST)
        return subprocess.call(argv or ["bash"], env=env)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
