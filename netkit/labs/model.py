"""Lab files: find them, read them (YAML with line numbers), check their shape (pure).

A lab is a folder `labs/NN-topic/` with README.md and lab.yaml:

    title: one line
    about: what the lab is about, one line
    hosts: 2                      # optional: a multi-host lab (`netkit sandbox --hosts N`; on h1)
    config: {icc: false}          # optional: netkit settings of the lab (written to $NETKIT_CONFIG)
    compose: compose.yaml         # optional: the starting topology (`netkit up`)
    setup: |                      # optional: shell lines run after that (start servers, break things)
    steps:
      - title: ...
        text: |                   # for the student
        do: |                     # the model answer: one command a line
        check: |                  # shell; exit 0 = done. Grades the state the student left.
        hint: ...                 # shown when the check fails
        skip_test: true           # the suite skips this step's answer and expects exactly its check to fail
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from netkit.errors import UserError

PLANNED: list[tuple[str, str]] = []
LAB_KEYS = {"title", "about", "hosts", "config", "compose", "setup", "steps"}
STEP_KEYS = {"title", "text", "do", "check", "hint", "skip_test"}
_FOLDER = re.compile(r"^(\d\d)-[a-z0-9-]+$")


@dataclass
class Step:
    number: int
    title: str
    text: str
    do: list[str]
    check: str
    hint: str
    skip_test: bool = False


@dataclass
class Lab:
    number: int
    slug: str
    folder: str
    title: str
    about: str
    steps: list[Step] = field(default_factory=list)
    config: dict | None = None
    compose: str | None = None  # path of the compose file
    setup: list[str] = field(default_factory=list)
    hosts: int = 1  # more than one: played in `netkit sandbox --hosts N`, from h1

    @property
    def readme(self) -> str:
        return os.path.join(self.folder, "README.md")


def labs_dir() -> str:
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.environ.get("NETKIT_LABS", os.path.join(here, "labs"))


def lines(text: str | None) -> list[str]:
    """Command lines of a `do`/`setup` block; blank lines and comments dropped."""
    return [l.strip() for l in (text or "").splitlines() if l.strip() and not l.strip().startswith("#")]


def load(folder: str) -> Lab:
    from netkit.compose import ComposeError, Mapping, Sequence, load_yaml

    path = os.path.join(folder, "lab.yaml")
    name = os.path.basename(folder.rstrip("/"))
    m = _FOLDER.match(name)
    if not m:
        raise UserError(f"{folder}: a lab folder is named NN-topic")
    with open(path) as fh:
        doc = load_yaml(fh.read(), path)

    def fail(line: int, msg: str):
        raise ComposeError(f"{path}:{line}: {msg}")

    if not isinstance(doc, Mapping):
        fail(1, "a lab file is a mapping")
    for key in doc:
        if key not in LAB_KEYS:
            fail(doc.lines[key], f"{key}: unknown key; known: {', '.join(sorted(LAB_KEYS))}")
    lab = Lab(int(m.group(1)), name[3:], folder, str(doc.get("title", "")), str(doc.get("about", "")),
              config=dict(doc["config"]) if doc.get("config") else None, setup=lines(doc.get("setup")))
    if "hosts" in doc:
        if not str(doc["hosts"]).isdigit() or not 1 <= int(doc["hosts"]) <= 9:
            fail(doc.lines["hosts"], "hosts: a number of hosts from 1 to 9")
        lab.hosts = int(doc["hosts"])
    if doc.get("compose"):
        lab.compose = os.path.join(folder, doc["compose"])
        if not os.path.exists(lab.compose):
            fail(doc.lines["compose"], f"compose: no file {lab.compose}")
    steps = doc.get("steps")
    if not isinstance(steps, Sequence) or not steps:
        fail(doc.lines.get("steps", 1), "steps: a list of steps is needed")
    for i, raw in enumerate(steps):
        if not isinstance(raw, Mapping):
            fail(steps.lines[i], f"steps[{i}]: a step is a mapping")
        for key in raw:
            if key not in STEP_KEYS:
                fail(raw.lines[key], f"steps[{i}].{key}: unknown key; known: {', '.join(sorted(STEP_KEYS))}")
        for key in ("title", "text", "do", "check", "hint"):
            if not raw.get(key):
                fail(raw.line, f"steps[{i}]: '{key}' is missing")
        lab.steps.append(Step(i + 1, str(raw["title"]), str(raw["text"]).strip(), lines(raw["do"]),
                              str(raw["check"]).strip(), str(raw["hint"]).strip(), bool(raw.get("skip_test"))))
    return lab


def all_labs() -> list[Lab]:
    base = labs_dir()
    if not os.path.isdir(base):
        return []
    return [load(os.path.join(base, d)) for d in sorted(os.listdir(base))
            if _FOLDER.match(d) and os.path.exists(os.path.join(base, d, "lab.yaml"))]


def find(number: str) -> Lab:
    """A lab by number (`3`, `03`) or by its folder name."""
    for lab in all_labs():
        if number.lstrip("0") == str(lab.number) or number == os.path.basename(lab.folder) or number == lab.slug:
            return lab
    raise UserError(f"no lab '{number}'; see `netkit lab list`")
