"""What a warm process (netkitd) loads before it forks: pyroute2's rtnetlink part and its compiled
message tables, so that a forked command finds them ready (the daemon itself must not import
pyroute2: layers)."""
from __future__ import annotations


def preload_netlink() -> None:
    """pyroute2 compiles each message class's attribute table on first use (~10 ms for an
    attach's links, addresses and routes); do it once here, in pure Python, touching no socket."""
    # The rtnetlink part netkit uses, not the whole package (kernel/pyroute2_loader.py).
    from netkit.kernel.pyroute2_loader import load

    nla_base = load("pyroute2.netlink", "nla_base")
    ifaddrmsg = load("pyroute2.netlink.rtnl.ifaddrmsg", "ifaddrmsg")
    ifinfmsg = load("pyroute2.netlink.rtnl.ifinfmsg", "ifinfmsg")
    rtmsg = load("pyroute2.netlink.rtnl.rtmsg", "rtmsg")

    seen: set = set()

    def compile_tree(cls) -> None:
        seen.add(cls)
        try:
            cls()
        except Exception:  # noqa: BLE001 - a class that needs arguments stays lazy
            return
        for name in dir(cls):
            attr = getattr(cls, name, None)
            if isinstance(attr, type) and issubclass(attr, nla_base) and attr not in seen:
                compile_tree(attr)

    for message in (ifinfmsg, ifaddrmsg, rtmsg):
        compile_tree(message)


def preload_host_facts() -> None:
    """Ask the host once what every command would ask it through a process of its own: what
    `iptables` is (`iptables -V`) and whether iptables-nft works. Both answers are remembered by
    the tools' resolved paths (kernel/fw), so a forked command finds them and a changed host is
    still asked again. No table is opened and no rule read here."""
    from netkit import programs
    from netkit.kernel import fw
    from netkit.kernel.fw import iptables_nft

    fw.iptables_kind()
    if programs.find("iptables-nft-save") is not None:
        iptables_nft.works()


def preload_libraries() -> None:
    """dlopen libnftables (and its libraries) once, ~0.7 ms a forked command would pay on its
    first nft change (the anti-spoofing elements). No context is made: a context holds a netlink
    socket, which a forked child must not share with its parent."""
    from netkit.kernel.fw import libnft

    try:
        libnft.load()
    except Exception:  # noqa: BLE001 - missing: the command that needs it says so in one line
        pass
