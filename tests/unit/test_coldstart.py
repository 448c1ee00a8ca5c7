"""Cold start: netkit loads only the rtnetlink part of pyroute2 (kernel/pyroute2_loader.py), and
nothing on its paths runs pyroute2's package __init__ (which imports the whole library)."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

NETKIT = pathlib.Path(__file__).resolve().parents[2] / "netkit"


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_the_loader_gives_working_classes_without_the_package_init():
    # A fresh process: the loader is the first to touch pyroute2. The netlink socket only reads
    # (loopback's index; a dump of a link that cannot exist), nothing changes on this machine.
    out = _run(
        "import sys\n"
        "from netkit.kernel import pyroute2_loader as L\n"
        "with L.IPRoute() as ipr:\n"
        "    print('LO', ipr.link_lookup(ifname='lo'))\n"
        "    try:\n"
        "        ipr.get_links(2**31 - 7)\n"
        "    except L.NetlinkError as err:\n"
        "        print('ERR', err.code)\n"
        "print('PERM', L.ndmsg.states['permanent'])\n"
        "print('LAZY', L.fully_imported(), 'pyroute2.ndb.main' in sys.modules, 'pyroute2.ipdb' in sys.modules)\n"
        # Code elsewhere that asks the package for a class still gets it (the real __init__ runs).
        "from pyroute2 import IPRoute, Conntrack\n"
        "import pyroute2\n"
        "print('FULL', L.fully_imported(), IPRoute is L.IPRoute, pyroute2.__version__ != 'unknown',\n"
        "      Conntrack.__module__)\n"
    )
    assert "LO [1]" in out and "ERR 19" in out and "PERM 128" in out, out
    assert "LAZY False False False" in out, out
    assert "FULL True True True pyroute2.conntrack" in out, out


def test_the_loader_fails_loudly_when_pyroute2_moves_a_class():
    from netkit.kernel import pyroute2_loader as L

    for module, name in [("pyroute2.iproute.nowhere", "IPRoute"), ("pyroute2.iproute.linux", "NoSuchClass")]:
        with pytest.raises(L.PyRoute2LayoutError, match=f"{module}.{name}.*pyroute2 0.9"):
            L.load(module, name)


def test_only_the_loader_imports_pyroute2():
    """`import pyroute2` or `from pyroute2[.x] import ...` anywhere else could run the package
    __init__ (a submodule import first imports its package)."""
    offenders = []
    for path in NETKIT.rglob("*.py"):
        if path.name == "pyroute2_loader.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(NETKIT)}:{node.lineno}" for n in names
                          if n == "pyroute2" or n.startswith("pyroute2.")]
    assert offenders == []


def test_no_netkit_path_runs_the_pyroute2_package_init():
    """Every module of netkit imported (CLI, engine, kernel, daemon, cni, cluster, tracer), the
    daemon's warm-up run, and the kernel executor built: still only the rtnetlink part."""
    out = _run(
        "import pkgutil, sys, importlib, netkit\n"
        "for m in pkgutil.walk_packages(netkit.__path__, 'netkit.'):\n"
        "    if m.name not in ('netkit.__main__',):\n"
        "        importlib.import_module(m.name)\n"
        "from netkit.kernel.warm import preload_netlink\n"
        "preload_netlink()\n"
        "from netkit.kernel.executor import kernel_executor\n"
        "kernel_executor()\n"
        "from netkit.kernel import pyroute2_loader as L\n"
        "print('FULL', L.fully_imported(), 'pyroute2.ndb.main' in sys.modules)\n"
    )
    assert "FULL False False" in out, out


def _cli_in_process(argv: list[str], every_group: bool) -> str:
    """`netkit ARGV` in a fresh process, through netkit.cli.main.run (only the groups it needs) or
    with every group registered first (what it did before it loaded groups lazily)."""
    code = ("import sys\nfrom netkit.cli import main\n"
            + ("main.load()\n" if every_group else "")
            + f"sys.argv = ['netkit'] + {argv!r}\n"
            "try:\n    main.run()\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
            "print('LOADED', sorted(m for m in sys.modules if m.startswith('netkit.cli.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    return out.stdout + out.stderr


def test_every_top_level_command_is_registered_by_the_module_main_loads_for_it():
    out = _run(
        "import typer.main\nfrom netkit.cli import main\nfrom netkit.cli.app import app\nmain.load()\n"
        "root = typer.main.get_command(app)\n"
        "def module_of(cmd):\n"
        "    if cmd.callback is not None:\n"
        "        return cmd.callback.__module__\n"
        "    return {module_of(sub) for sub in cmd.commands.values()}.pop()\n"
        "for name, cmd in root.commands.items():\n"
        "    print(name, module_of(cmd).rsplit('.', 1)[1], main.MODULE_OF.get(name))\n"
    )
    rows = [line.split() for line in out.splitlines()]
    assert len(rows) >= 20
    for name, module, mapped in rows:
        assert mapped == ("None" if name == "daemon" else module), (name, module, mapped)


# One of each kind: a group's command, a mistyped subcommand, a root command, the version, the
# daemon (every group), a mistyped command (every group, for the suggestion).
@pytest.mark.parametrize("argv", [["container", "create", "--help"], ["network", "lss"], ["publish"],
                                  ["--version"], ["daemon", "--help"], ["contaner", "ls"]])
def test_loading_only_the_needed_group_changes_no_output(argv):
    lazy, full = _cli_in_process(argv, False), _cli_in_process(argv, True)
    assert lazy.split("LOADED")[0] == full.split("LOADED")[0]
    if argv[0] in ("container", "network", "publish"):
        assert lazy.count("netkit.cli.") < full.count("netkit.cli.")  # really fewer modules


@pytest.mark.parametrize("argv", [["container", "create", "--help"], ["network", "create"]])
def test_help_and_usage_errors_do_not_import_rich(argv):
    """Typer imports rich just to escape `[required]` when rich is installed; netkit's help is plain."""
    out = _cli_in_process(argv, False)
    assert "Usage: netkit" in out and ("[required]" in out or "Missing argument" in out), out
    out = _run("import sys\nfrom netkit.cli import main\n"
               f"sys.argv = ['netkit'] + {argv!r}\n"
               "try:\n    main.run()\nexcept SystemExit:\n    pass\n"
               "print('RICH', 'rich' in sys.modules)\n")
    assert "RICH False" in out, out


def test_links_and_the_create_path_import_no_pyroute2():
    """kernel/links.py imports pyroute2 at a step's first use of it: a container's veth goes over
    kernel/rtlink.py, so a create without netkitd pays no pyroute2 import (~85 ms of ~200)."""
    out = _run("import sys\nimport netkit.kernel.links, netkit.kernel.executor, netkit.engine.containers\n"
               "from netkit.kernel.executor import kernel_executor\nkernel_executor()\n"
               "print('PYROUTE2', any(m.startswith('pyroute2') or m.endswith('pyroute2_loader') for m in sys.modules))\n")
    assert "PYROUTE2 False" in out, out
