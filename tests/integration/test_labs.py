"""Every lab: an untouched starting point fails its check, the model answer passes, and leaving out
a step marked skip_test makes exactly that step's check fail. Each lab runs in a sandbox of its own."""
from __future__ import annotations

import re

import pytest

from netkit.labs import model

pytestmark = pytest.mark.root
LABS = model.all_labs()
# Labs of one host run in the suite's sandbox; multi-host ones build their hosts themselves.
SINGLE = [lab for lab in LABS if lab.hosts == 1]
MULTI = [lab for lab in LABS if lab.hosts > 1]
GRADE = re.compile(r"^\s+(ok  |FAIL) step (\d+):", re.M)


def grades(out: str) -> dict[int, bool]:
    return {int(n): word.strip() == "ok" for word, n in GRADE.findall(out)}


def test_there_are_enough_labs_and_each_has_a_skip_test_step():
    assert len(LABS) >= 14
    for lab in LABS:
        assert any(s.skip_test for s in lab.steps), f"lab {lab.number} has no step marked skip_test"
        with open(lab.readme) as fh:
            assert f"netkit lab start {lab.number}" in fh.read()


@pytest.mark.parametrize("lab", SINGLE, ids=[l.slug for l in SINGLE])
def test_untouched_fails_and_the_model_answer_passes(sandbox, lab):
    sandbox.netkit("lab", "start", lab.number, "--no-shell", timeout=120)
    untouched = sandbox.netkit("lab", "check", lab.number, check=False, timeout=300)
    assert untouched.returncode == 1, untouched.stdout + untouched.stderr
    assert not all(grades(untouched.stdout).values())
    played = sandbox.netkit("lab", "run", lab.number, check=False, timeout=300)
    assert played.returncode == 0, played.stdout + played.stderr
    assert grades(played.stdout.split("== grade")[-1]) == {s.number: True for s in lab.steps}


@pytest.mark.parametrize("lab", SINGLE, ids=[l.slug for l in SINGLE])
def test_leaving_out_a_step_fails_exactly_its_check(sandbox, lab):
    step = next(s for s in lab.steps if s.skip_test)
    sandbox.netkit("lab", "start", lab.number, "--no-shell", timeout=120)
    played = sandbox.netkit("lab", "run", lab.number, "--skip", step.number, check=False, timeout=300)
    assert played.returncode == 1, played.stdout + played.stderr
    result = grades(played.stdout.split("== grade")[-1])
    assert result == {s.number: s.number != step.number for s in lab.steps}, played.stdout


@pytest.mark.multihost
@pytest.mark.parametrize("lab", MULTI, ids=[l.slug for l in MULTI])
def test_multihost_lab_untouched_fails_model_answer_passes_and_a_left_out_step_fails(sandbox, lab):
    """`netkit lab run N` builds the lab's hosts itself (`netkit sandbox --hosts N`, played on h1)."""
    from required import need

    need("etcd")
    n = lab.number
    untouched = sandbox.netkit("sandbox", "--hosts", lab.hosts, "--", "bash", "-c",
                               f"netkit lab start {n} --no-shell && netkit lab check {n}", check=False, timeout=300)
    assert untouched.returncode == 1, untouched.stdout + untouched.stderr
    assert not all(grades(untouched.stdout).values())
    played = sandbox.netkit("lab", "run", n, check=False, timeout=300)
    assert played.returncode == 0, played.stdout + played.stderr
    assert grades(played.stdout.split("== grade")[-1]) == {s.number: True for s in lab.steps}
    step = next(s for s in lab.steps if s.skip_test)
    skipped = sandbox.netkit("lab", "run", n, "--skip", step.number, check=False, timeout=300)
    assert skipped.returncode == 1, skipped.stdout + skipped.stderr
    assert grades(skipped.stdout.split("== grade")[-1]) == {s.number: s.number != step.number for s in lab.steps}
