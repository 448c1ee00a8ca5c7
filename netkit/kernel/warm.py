"""What a warm process (netkitd) loads before it forks: pyroute2 and its compiled message tables,
so that a forked command finds them ready (the daemon itself must not import pyroute2: layers)."""
from __future__ import annotations


def preload_netlink() -> None:
    """pyroute2 compiles each message class's attribute table on first use (~10 ms for an
    attach's links, addresses and routes); do it once here, in pure Python, touching no socket."""
    import pyroute2  # noqa: F401
    from pyroute2 import IPRoute  # noqa: F401 - pyroute2 resolves its names lazily
    from pyroute2.netlink import nla_base
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

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
