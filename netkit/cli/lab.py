"""`netkit lab ...`: list, show, start (a sandbox shell at the lab's starting point), check
(grade what the student did), run (the model answer, straight through or paused per step)."""
from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from netkit.cli import render
from netkit.cli.app import group

lab_app = group("lab", "Classroom labs that check themselves, each in a sandbox of its own.")


def _in_sandbox_or_reexec(argv: list[str], hosts: int = 1) -> None:
    """Labs change network state: outside a sandbox, run this same command inside a fresh one
    (with its hosts, for a multi-host lab: `netkit sandbox --hosts N`, the command on h1)."""
    import os

    from netkit import sandbox

    if hosts > 1 and not os.environ.get("NETKIT_HOST"):
        from netkit import multihost

        sys.exit(multihost.run(hosts, [sys.executable, "-m", "netkit", "lab"] + argv))
    if not sandbox.in_sandbox():
        code = sandbox.run([sys.executable, "-m", "netkit", "lab"] + argv)
        sys.exit(code)


@lab_app.command("list")
def list_():
    """The labs, in course order (and the ones planned)."""
    from netkit.labs import model

    rows = [[f"{lab.number:02d}", lab.slug, len(lab.steps), lab.title] for lab in model.all_labs()]
    rows += [["--", slug, "-", f"planned: {about}"] for slug, about in model.PLANNED]
    render.emit(render.table(["LAB", "TOPIC", "STEPS", "TITLE"], rows))


@lab_app.command("show")
def show(number: str = typer.Argument(..., help="Lab number (see `netkit lab list`), e.g. 3 or 03.")):
    """The lab's README and its steps (without the answers)."""
    from netkit.labs import model, runner

    lab = model.find(number)
    with open(lab.readme) as fh:
        render.emit(fh.read().rstrip())
    render.emit("")
    for step in lab.steps:
        render.emit(f"Step {step.number}: {step.title}\n{step.text}\n")
    settings = lab.config or {}
    iptables = runner.commands_for(settings.get("firewall_backend", "auto"), settings.get("iptables", True))["IPTABLES"]
    render.emit(f"(In the lab's shell, $IPTABLES is `{iptables}` and $LAB is "
                f"{runner.LAB_DIR}.)")


@lab_app.command("start")
def start(number: str = typer.Argument(..., help="Lab number (see `netkit lab list`), e.g. 3 or 03."), no_shell: bool = typer.Option(False, "--no-shell",
                                                     help="Only build the starting point (in the sandbox you are in).")):
    """A sandbox shell at the lab's starting point; `netkit lab check N` in it grades your work."""
    from netkit.labs import model, runner

    lab = model.find(number)
    if not no_shell:
        _in_sandbox_or_reexec(["start", number], lab.hosts)
    runner.require_sandbox(lab, "start")
    runner.prepare(lab)
    if no_shell:
        return
    render.emit(f"\n{lab.title}: {len(lab.steps)} steps; `netkit lab show {lab.number}` prints them, "
                f"`netkit lab check {lab.number}` grades your work. `exit` ends the lab and removes everything.")
    sys.exit(runner.shell(lab))


@lab_app.command("check")
def check(number: str = typer.Argument(..., help="Lab number (see `netkit lab list`), e.g. 3 or 03."), step: Optional[int] = typer.Option(None, "--step", help="Only this step.")):
    """Grade the state of the lab's sandbox, step by step, with hints."""
    from netkit.errors import UserError
    from netkit.labs import model, runner

    lab = model.find(number)
    runner.require_sandbox(lab, "check")
    if not runner.started(lab):
        raise UserError(f"this sandbox does not hold lab {lab.number}: start it with `netkit lab start {lab.number}`")
    if step is not None and not any(s.number == step for s in lab.steps):
        raise UserError(f"lab {lab.number} has steps 1 to {len(lab.steps)}")
    if not runner.report(runner.grade(lab, step)):
        sys.exit(1)


@lab_app.command("run")
def run(number: str = typer.Argument(..., help="Lab number (see `netkit lab list`), e.g. 3 or 03."),
        step: bool = typer.Option(False, "--step", help="Pause before each step (for a teacher)."),
        skip: Optional[int] = typer.Option(None, "--skip", help="Leave out this step's answer (to see its check fail).")):
    """Play the model answer in a sandbox, checking each step, then grade the whole lab."""
    from netkit.labs import model, runner

    lab = model.find(number)
    argv = ["run", number] + (["--step"] if step else []) + (["--skip", str(skip)] if skip else [])
    _in_sandbox_or_reexec(argv, lab.hosts)
    if not runner.started(lab):
        runner.prepare(lab)
    runner.play(lab, pause=step, skip=skip)
    render.emit("\n== grade")
    if not runner.report(runner.grade(lab)):
        sys.exit(1)
