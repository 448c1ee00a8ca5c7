"""The layer contracts of pyproject.toml ([tool.importlinter]) hold: cli -> trace -> engine ->
kernel/state -> pure planners, the engine's own order, no import cycles, and pyroute2/iptc imported
only under netkit/kernel/. Checked by import-linter's `lint-imports`, which fails on a violation."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_layer_contracts_are_kept():
    exe = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    proc = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 broken" in proc.stdout and " kept" in proc.stdout


def test_the_kernel_library_contract_covers_every_module():
    """A new module or package outside netkit/kernel is checked too: it must be on the list."""
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        contracts = tomllib.load(fh)["tool"]["importlinter"]["contracts"]
    listed = set(next(c for c in contracts if c["id"] == "kernel-libraries")["source_modules"])
    top = os.path.join(REPO, "netkit")
    present = {f"netkit.{n[:-3]}" for n in os.listdir(top) if n.endswith(".py") and not n.startswith("__")}
    present |= {f"netkit.{n}" for n in os.listdir(top)
                if os.path.isfile(os.path.join(top, n, "__init__.py")) and n != "kernel"}
    assert present <= listed, f"add to the kernel-libraries contract: {sorted(present - listed)}"
