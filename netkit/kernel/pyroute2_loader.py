"""Import the part of pyroute2 netkit uses (rtnetlink: IPRoute, its messages, NetlinkError)
without running pyroute2's package `__init__`, which imports nearly the whole library.

Why: `import pyroute2` (0.9.7) imports every public class eagerly -- IPDB, NDB, conntrack,
nftables, ipset, ipvs, nl80211, wireguard, plan9 ... -- 163 modules, ~555 ms over the
interpreter's start on this loaded machine, while the rtnetlink part netkit needs is 99 modules
and ~200 ms less (figures: docs/facts.md, "CLI start-up"). pyroute2 0.9 has no lazy mode.

How: the package `pyroute2` is registered in sys.modules as a module made from its own import
spec (right `__path__`, `__file__`, `__spec__`) whose `__init__` has not run yet, so that
`import pyroute2.iproute.linux` and friends load only what they themselves import. The stub is
transparent: the first time anyone asks it for a name that is not a submodule (`from pyroute2
import Conntrack`, `pyroute2.__version__`), it runs the real `__init__` in place and answers, so
code elsewhere that does `from pyroute2 import X` keeps working. If pyroute2 was already
imported in full, it is used as it is.

If pyroute2's layout changes (the package, or a class netkit needs, moves), this fails loudly
with PyRoute2LayoutError naming what is missing, instead of silently loading everything.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading

PACKAGE = "pyroute2"
_init_lock = threading.RLock()


class PyRoute2LayoutError(ImportError):
    """pyroute2 is installed but not laid out as netkit/kernel/pyroute2_loader.py expects."""


def _layout_error(what: str) -> PyRoute2LayoutError:
    return PyRoute2LayoutError(
        f"pyroute2's layout is not what netkit expects ({what}); netkit was written against "
        f"pyroute2 0.9.x: install it (`pip install 'pyroute2>=0.9,<0.10'`) or update "
        f"netkit/kernel/pyroute2_loader.py")


def _run_package_init(package, spec) -> None:
    """Run pyroute2's real `__init__` in the stub's namespace, once (the first lookup of a name
    the stub does not have yet)."""
    with _init_lock:
        if package.__dict__.get("_netkit_lazy") is not True:
            return
        # Lookups made by the __init__ itself (`from pyroute2.config import log` asks the
        # package for `config`) must see plain attributes, not come back here.
        del package.__dict__["__getattr__"]
        package._netkit_lazy = False
        spec.loader.exec_module(package)


def _make_stub(spec):
    package = importlib.util.module_from_spec(spec)
    package._netkit_lazy = True

    def __getattr__(name: str):
        # Dunder probes (copy, inspect, pickle) and submodules not imported yet are not public
        # names: AttributeError lets the import system load a submodule as it normally would.
        if name.startswith("__") and name not in ("__version__", "__all__"):
            raise AttributeError(name)
        if importlib.util.find_spec(f"{PACKAGE}.{name}") is not None:
            raise AttributeError(name)
        _run_package_init(package, spec)
        return getattr(package, name)

    package.__getattr__ = __getattr__
    return package


def install() -> None:
    """Make `pyroute2` importable part by part (see the module docstring); idempotent."""
    if PACKAGE in sys.modules:
        return
    with _init_lock:
        if PACKAGE in sys.modules:
            return
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None:
            raise ImportError("pyroute2 is not installed: run `bash scripts/bootstrap.sh` (or `pip install pyroute2`)")
        if spec.submodule_search_locations is None or spec.loader is None:
            raise _layout_error("`pyroute2` is not a package")
        sys.modules[PACKAGE] = _make_stub(spec)


def load(module: str, name: str):
    """`from module import name`, with pyroute2's package `__init__` bypassed."""
    install()
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        if isinstance(err, PyRoute2LayoutError):
            raise
        raise _layout_error(f"{module}.{name}: {err}") from err


def fully_imported() -> bool:
    """True once pyroute2's package `__init__` ran (someone asked the package for a class)."""
    package = sys.modules.get(PACKAGE)
    return package is not None and package.__dict__.get("_netkit_lazy") is not True


# What netkit takes from pyroute2 (loading them checks the layout).
IPRoute = load("pyroute2.iproute.linux", "IPRoute")
NetlinkError = load("pyroute2.netlink.exceptions", "NetlinkError")
ndmsg = load("pyroute2.netlink.rtnl", "ndmsg")
