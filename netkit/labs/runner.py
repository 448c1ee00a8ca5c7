"""Run labs inside a sandbox: build the starting point, play the model answer, grade the state.

Everything here runs only inside `netkit sandbox` (the CLI re-executes itself there), so a lab
can break ip_forward or delete rules without touching the machine. Commands and checks run in
bash with the lab's environment: $LAB (the student's folder, /run/netkit/lab: a sandbox tmpfs),
$NETKIT_CONFIG (the lab's netkit settings), and $IPTABLES / $IPTABLES_SAVE, the commands that
show netkit's rules (see firewall_commands: plain `iptables` with the default backend).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from netkit.errors import EnvError, UserError
from netkit.labs.model import Lab, Step

LAB_DIR = "/run/netkit/lab"
MARKER = ".lab"  # which lab this sandbox holds
# The ONE place naming the commands that list netkit's rules ($IPTABLES, $IPTABLES_SAVE), per
# active firewall backend. Plain `iptables` whenever it is that backend's tool on this host: with
# the default (auto) it always is, so students type what the course notes say.
FIREWALL_COMMANDS = {
    "plain": {"IPTABLES": "iptables", "IPTABLES_SAVE": "iptables-save"},
    "iptables-legacy": {"IPTABLES": "iptables-legacy", "IPTABLES_SAVE": "iptables-legacy-save"},
    "iptables-nft": {"IPTABLES": "iptables-nft", "IPTABLES_SAVE": "iptables-nft-save"},
}
COMMAND_TIMEOUT = 60
CHECK_TIMEOUT = 30


def firewall_commands(config_path: str) -> dict[str, str]:
    """$IPTABLES and $IPTABLES_SAVE for the backend the lab's settings file chooses."""
    from netkit import config

    cfg = config.load(config_path)
    return commands_for(cfg.firewall_backend, cfg.iptables)


def commands_for(setting: str = "auto", iptables: bool = True) -> dict[str, str]:
    """$IPTABLES and $IPTABLES_SAVE for a `firewall_backend` setting. (nftables and none have no
    iptables view: plain `iptables`; `netkit rules` shows nftables' table.)"""
    from netkit.kernel import fw

    name = fw.choose(setting, iptables).name
    plain = {"nf_tables": "iptables-nft", "legacy": "iptables-legacy"}.get(fw.iptables_kind() or "")
    return FIREWALL_COMMANDS["plain" if name == plain or name not in FIREWALL_COMMANDS else name]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["LAB"] = LAB_DIR
    env["NETKIT_CONFIG"] = os.path.join(LAB_DIR, "netkit-config.json")
    env.update(firewall_commands(env["NETKIT_CONFIG"]))
    return env


def on_hosts(lab: Lab) -> bool:
    """Whether this process runs where the lab needs: a sandbox, with its hosts if it has several."""
    from netkit import sandbox

    return sandbox.in_sandbox() and (lab.hosts == 1 or bool(os.environ.get("NETKIT_HOST")))


def require_sandbox(lab: Lab, what: str) -> None:
    if not on_hosts(lab):
        raise EnvError(f"`netkit lab {what}` works inside a lab's sandbox: run `netkit lab start {lab.number}`, "
                       f"then `netkit lab {what} {lab.number}` in its shell")


def started(lab: Lab) -> bool:
    try:
        with open(os.path.join(LAB_DIR, MARKER)) as fh:
            return fh.read().strip() == str(lab.number)
    except OSError:
        return False


def run_shell(cmd: str, timeout: int = COMMAND_TIMEOUT) -> tuple[int, str]:
    """Run one shell command with the lab's environment; (exit code, output). Output goes through
    a file, not a pipe: a server the command leaves in the background must not block us."""
    with tempfile.TemporaryFile(mode="w+") as out:
        try:
            rc = subprocess.run(["bash", "-c", cmd], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=environment(), cwd=LAB_DIR, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
        out.seek(0)
        return rc, out.read()


def prepare(lab: Lab, echo=print) -> None:
    """The lab's starting point in this (fresh) sandbox: folder, settings, topology, setup lines."""
    os.makedirs(LAB_DIR, exist_ok=True)
    if os.path.exists(os.path.join(LAB_DIR, MARKER)):
        raise UserError(f"this sandbox already holds a lab; start lab {lab.number} in a fresh one "
                        f"(exit this shell, then `netkit lab start {lab.number}`)")
    env = environment()
    settings = dict(lab.config or {})
    if lab.hosts > 1:
        # On a host of a multi-host sandbox: keep the host's cluster settings under the lab's.
        with open(os.environ["NETKIT_CONFIG"]) as fh:
            settings = json.load(fh) | settings
    with open(env["NETKIT_CONFIG"], "w") as fh:
        json.dump(settings, fh, indent=2)
    if lab.compose:
        shutil.copy(lab.compose, os.path.join(LAB_DIR, "compose.yaml"))
        rc, out = run_shell("netkit up -f compose.yaml")
        if rc != 0:
            raise EnvError(f"lab {lab.number}: the starting topology failed: {out.strip().splitlines()[-1]}")
    for line in lab.setup:
        rc, out = run_shell(line)
        if rc != 0:
            raise EnvError(f"lab {lab.number}: setup line `{line}` failed: {out.strip()}")
    with open(os.path.join(LAB_DIR, MARKER), "w") as fh:
        fh.write(f"{lab.number}\n")
    echo(f"lab {lab.number} ({lab.title}): starting point ready in {LAB_DIR}")


@dataclass
class Grade:
    step: Step
    passed: bool
    output: str


def grade(lab: Lab, only: int | None = None) -> list[Grade]:
    grades = []
    for step in lab.steps:
        if only is not None and step.number != only:
            continue
        rc, out = run_shell(step.check, CHECK_TIMEOUT)
        grades.append(Grade(step, rc == 0, out))
    return grades


def report(grades: list[Grade], echo=print) -> bool:
    for g in grades:
        echo(f"  {'ok  ' if g.passed else 'FAIL'} step {g.step.number}: {g.step.title}")
        if not g.passed:
            echo(f"       hint: {g.step.hint}")
    passed = sum(g.passed for g in grades)
    echo(f"{passed} of {len(grades)} steps done")
    return passed == len(grades)


def play(lab: Lab, pause: bool = False, skip: int | None = None, echo=print) -> bool:
    """The model answer, step by step, with each step's check right after it."""
    ok = True
    for step in lab.steps:
        echo(f"\n== step {step.number}: {step.title}")
        echo(step.text)
        if pause:
            input("-- press Enter to run the model answer --")
        if step.number == skip:
            echo("(skipped)")
            continue
        for line in step.do:
            echo(f"$ {line}")
            rc, out = run_shell(line)
            if out:
                echo(out.rstrip("\n"))
            if rc != 0:
                echo(f"(exit code {rc})")
        (g,) = grade(lab, step.number)
        echo(f"check: {'ok' if g.passed else 'FAIL: ' + g.step.hint}")
        ok &= g.passed
    sys.stdout.flush()
    return ok


def shell(lab: Lab) -> int:
    """The student's shell at the starting point: the lab's environment, prompt and folder."""
    env = environment()
    env["PS1"] = f"[lab {lab.number:02d}] \\w# "
    return subprocess.call(["bash", "--norc", "-i"], env=env, cwd=LAB_DIR)
