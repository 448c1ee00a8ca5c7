"""Play one step's model answer in the lab this sandbox (or multi-host sandbox host) holds, the way
`netkit lab run` plays each step: every `do` line through the lab's shell, output echoed, exit
codes left to the step's check. test_labs uses it to finish, in order, a run that left out the
lab's last step: `python lab_step.py LAB STEP`."""
from __future__ import annotations

import sys

from netkit.labs import model, runner


def main(lab_number: str, step_number: str) -> int:
    lab = model.find(lab_number)
    if not runner.on_hosts(lab) or not runner.started(lab):
        print(f"lab_step: this sandbox does not hold lab {lab.number}", file=sys.stderr)
        return 2
    step = next(s for s in lab.steps if s.number == int(step_number))
    for line in step.do:
        rc, out = runner.run_shell(line)
        print(f"$ {line}\n{out}(exit code {rc})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
