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
