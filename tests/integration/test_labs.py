"""Every lab: an untouched starting point fails its check, the model answer passes, and leaving out
a step marked skip_test makes exactly that step's check fail.

When the left-out step is the lab's last one, one starting point shows all three: untouched check,
`lab run --skip LAST` (exactly LAST fails), then LAST's answer (lab_step.py) completes the model
answer in its own order and everything passes. Otherwise the model answer and the left-out step
each get a starting point (a sandbox) of their own."""
from __future__ import annotations

import os
import re
import sys

import pytest

from netkit.labs import model

pytestmark = pytest.mark.root
LABS = model.all_labs()
# Labs of one host run in the suite's sandbox; multi-host ones build their hosts themselves.
SINGLE = [lab for lab in LABS if lab.hosts == 1]
MULTI = [lab for lab in LABS if lab.hosts > 1]
GRADE = re.compile(r"^\s+(ok  |FAIL) step (\d+):", re.M)
PLAY_STEP = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab_step.py")]


def grades(out: str) -> dict[int, bool]:
    return {int(n): word.strip() == "ok" for word, n in GRADE.findall(out)}


def skip_step(lab: model.Lab) -> model.Step:
    return next(s for s in lab.steps if s.skip_test)


def skips_last(lab: model.Lab) -> bool:
    return skip_step(lab) is lab.steps[-1]


SKIPS_LAST = [lab for lab in SINGLE if skips_last(lab)]
SKIPS_OTHER = [lab for lab in SINGLE if not skips_last(lab)]


def all_but(lab: model.Lab, left_out: int) -> dict[int, bool]:
    return {s.number: s.number != left_out for s in lab.steps}


def test_there_are_enough_labs_and_each_has_a_skip_test_step():
    assert len(LABS) >= 14
    for lab in LABS:
        assert any(s.skip_test for s in lab.steps), f"lab {lab.number} has no step marked skip_test"
        with open(lab.readme) as fh:
            assert f"netkit lab start {lab.number}" in fh.read()
    assert SKIPS_LAST and len(SKIPS_LAST) + len(SKIPS_OTHER) == len(SINGLE)


@pytest.mark.parametrize("lab", SKIPS_LAST, ids=[l.slug for l in SKIPS_LAST])
def test_untouched_fails_leaving_out_the_last_step_fails_exactly_it_and_the_model_answer_passes(sandbox, lab):
    last = skip_step(lab).number
    sandbox.netkit("lab", "start", lab.number, "--no-shell", timeout=120)
    untouched = sandbox.netkit("lab", "check", lab.number, check=False, timeout=300)
    assert untouched.returncode == 1, untouched.stdout + untouched.stderr
    assert not all(grades(untouched.stdout).values())
    played = sandbox.netkit("lab", "run", lab.number, "--skip", last, check=False, timeout=300)
    assert played.returncode == 1, played.stdout + played.stderr
    assert grades(played.stdout.split("== grade")[-1]) == all_but(lab, last), played.stdout
    # The left-out last step's answer now: the whole model answer, played in its order.
    sandbox.sh(" ".join(PLAY_STEP + [str(lab.number), str(last)]), timeout=120)
    graded = sandbox.netkit("lab", "check", lab.number, check=False, timeout=300)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert grades(graded.stdout) == {s.number: True for s in lab.steps}


@pytest.mark.parametrize("lab", SKIPS_OTHER, ids=[l.slug for l in SKIPS_OTHER])
def test_untouched_fails_and_the_model_answer_passes(sandbox, lab):
    sandbox.netkit("lab", "start", lab.number, "--no-shell", timeout=120)
    untouched = sandbox.netkit("lab", "check", lab.number, check=False, timeout=300)
    assert untouched.returncode == 1, untouched.stdout + untouched.stderr
    assert not all(grades(untouched.stdout).values())
    played = sandbox.netkit("lab", "run", lab.number, check=False, timeout=300)
    assert played.returncode == 0, played.stdout + played.stderr
    assert grades(played.stdout.split("== grade")[-1]) == {s.number: True for s in lab.steps}


@pytest.mark.parametrize("lab", SKIPS_OTHER, ids=[l.slug for l in SKIPS_OTHER])
def test_leaving_out_a_step_fails_exactly_its_check(sandbox, lab):
    step = skip_step(lab)
    sandbox.netkit("lab", "start", lab.number, "--no-shell", timeout=120)
    played = sandbox.netkit("lab", "run", lab.number, "--skip", step.number, check=False, timeout=300)
    assert played.returncode == 1, played.stdout + played.stderr
    result = grades(played.stdout.split("== grade")[-1])
    assert result == all_but(lab, step.number), played.stdout


def _parts(out: str) -> dict[str, tuple[int, str]]:
    """The output of the multi-host script below, cut at its `@@ NAME rc=N` lines (each ends a part)."""
    parts, text = {}, []
    for line in out.splitlines(keepends=True):
        match = re.match(r"^@@ (\w+) rc=(\d+)$", line.strip())
        if match:
            parts[match.group(1)] = (int(match.group(2)), "".join(text))
            text = []
        else:
            text.append(line)
    return parts


@pytest.mark.multihost
@pytest.mark.parametrize("lab", MULTI, ids=[l.slug for l in MULTI])
def test_multihost_lab_untouched_fails_model_answer_passes_and_a_left_out_step_fails(sandbox, lab):
    """`netkit lab run N` builds the lab's hosts itself (`netkit sandbox --hosts N`, played on h1).
    A lab that leaves out its last step shows all three in one world of hosts, as above."""
    from required import need

    need("etcd")
    n = lab.number
    step = skip_step(lab)
    if skips_last(lab):
        play_last = " ".join(PLAY_STEP + [str(n), str(step.number)])
        script = (f"netkit lab start {n} --no-shell; echo \"@@ start rc=$?\"; "
                  f"netkit lab check {n}; echo \"@@ untouched rc=$?\"; "
                  f"netkit lab run {n} --skip {step.number}; echo \"@@ skipped rc=$?\"; "
                  f"{play_last}; echo \"@@ last rc=$?\"; "
                  f"netkit lab check {n}; echo \"@@ graded rc=$?\"")
        world = sandbox.netkit("sandbox", "--hosts", lab.hosts, "--", "bash", "-c", script, check=False, timeout=600)
        parts = _parts(world.stdout)
        assert set(parts) == {"start", "untouched", "skipped", "last", "graded"}, world.stdout + world.stderr
        assert parts["start"][0] == 0 and parts["last"][0] == 0, world.stdout + world.stderr
        rc, out = parts["untouched"]
        assert rc == 1 and not all(grades(out).values()), out
        rc, out = parts["skipped"]
        assert rc == 1 and grades(out.split("== grade")[-1]) == all_but(lab, step.number), out
        rc, out = parts["graded"]
        assert rc == 0 and grades(out) == {s.number: True for s in lab.steps}, out
        return
    untouched = sandbox.netkit("sandbox", "--hosts", lab.hosts, "--", "bash", "-c",
                               f"netkit lab start {n} --no-shell && netkit lab check {n}", check=False, timeout=300)
    assert untouched.returncode == 1, untouched.stdout + untouched.stderr
    assert not all(grades(untouched.stdout).values())
    played = sandbox.netkit("lab", "run", n, check=False, timeout=300)
    assert played.returncode == 0, played.stdout + played.stderr
    assert grades(played.stdout.split("== grade")[-1]) == {s.number: True for s in lab.steps}
    skipped = sandbox.netkit("lab", "run", n, "--skip", step.number, check=False, timeout=300)
    assert skipped.returncode == 1, skipped.stdout + skipped.stderr
    assert grades(skipped.stdout.split("== grade")[-1]) == all_but(lab, step.number)
