"""Every lab: an untouched starting point fails its check, the model answer passes, and leaving out
a step marked skip_test makes exactly that step's check fail. Each lab runs in a sandbox of its own."""
from __future__ import annotations

import re

import pytest

from netkit.labs import model

pytestmark = pytest.mark.root
LABS = model.all_labs()
GRADE = re.compile(r"^\s+(ok  |FAIL) step (\d+):", re.M)


def grades(out: str) -> dict[int, bool]:
    return {int(n): word.strip() == "ok" for word, n in GRADE.findall(out)}


def test_there_are_enough_labs_and_each_has_a_skip_test_step():
    assert len(LABS) >= 14
    for lab in LABS:
        assert any(s.skip_test for s in lab.steps), f"lab {lab.number} has no step marked skip_test"
        with open(lab.readme) as fh:
            assert f"netkit lab start {lab.number}" in fh.read()


@pytest.mark.parametrize("lab", LABS, ids=[l.slug for l in LABS])
def test_untouched_fails_and_the_model_answer_passes(sandbox, lab):
    sandbox.netkit("lab", "start", lab.number, "--no-shell", timeout=120)
    untouched = sandbox.netkit("lab", "check", lab.number, check=False, timeout=300)
    assert untouched.returncode == 1, untouched.stdout + untouched.stderr
    assert not all(grades(untouched.stdout).values())
    played = sandbox.netkit("lab", "run", lab.number, check=False, timeout=300)
    assert played.returncode == 0, played.stdout + played.stderr
    assert grades(played.stdout.split("== grade")[-1]) == {s.number: True for s in lab.steps}


@pytest.mark.parametrize("lab", LABS, ids=[l.slug for l in LABS])
def test_leaving_out_a_step_fails_exactly_its_check(sandbox, lab):
    step = next(s for s in lab.steps if s.skip_test)
    sandbox.netkit("lab", "start", lab.number, "--no-shell", timeout=120)
    played = sandbox.netkit("lab", "run", lab.number, "--skip", step.number, check=False, timeout=300)
    assert played.returncode == 1, played.stdout + played.stderr
    result = grades(played.stdout.split("== grade")[-1])
    assert result == {s.number: s.number != step.number for s in lab.steps}, played.stdout
