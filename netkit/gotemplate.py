"""Docker's `--format` templates: the part of Go's text/template that people paste, pure.

Supported: text; `{{.A.B}}` (struct fields and map keys alike), `{{.}}`, `{{$}}`, variables
(`{{$v := ...}}`, `{{range $k, $v := ...}}`), pipelines with `|`, `{{if}}/{{else if}}/{{else}}`,
`{{range}}` (with `{{else}}`), `{{with}}`, `{{end}}`, trim markers `{{-` / `-}}`, string and number
literals, and the functions Docker users reach for: json, index, len, join, split, lower, upper,
title, print, printf, println, eq, ne, lt, le, gt, ge, and, or, not, slice, truncate, pad.
Anything else is a one-line UserError, never a silently wrong output. Values print as Go does
(`map[k:v]`, `[a b]`, `<no value>`), because that is what a Docker user expects to see.
"""
from __future__ import annotations

import json as _json
import re
from dataclasses import dataclass, field

from netkit.errors import UserError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'''\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`) |
    (?P<num>-?\d+(?:\.\d+)?) |
    (?P<var>\$[A-Za-z_]\w*|\$) (?P<varfields>(?:\.[A-Za-z_]\w*)*) |
    (?P<field>(?:\.[A-Za-z_0-9][\w-]*)+|\.) |
    (?P<ident>[A-Za-z_]\w*) |
    (?P<op>:=|=|\||,|\(|\))
)''', re.X)


class TemplateError(UserError):
    """A template netkit cannot run: the message names what is wrong."""


def _bad(template: str, why: str) -> TemplateError:
    return TemplateError(f"invalid --format template {template!r}: {why}")


# ---- parsing ---------------------------------------------------------------------------------

@dataclass
class Text:
    text: str


@dataclass
class Action:
    pipeline: list  # commands: each a list of operands (tokens or nested pipelines)
    declare: list[str] = field(default_factory=list)


@dataclass
class Block:
    kind: str  # if, range, with
    pipeline: list
    declare: list[str]
    body: list
    orelse: list = field(default_factory=list)


def _tokens(src: str, template: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise _bad(template, f"cannot read {src[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup if m.lastgroup != "varfields" else "var"
        if kind == "field" and out and out[-1] == ("op", ")") and not m.group(0)[0].isspace():
            out.append(("chain", m.group(kind)))  # `(index $v 0).HostPort`
        elif m.group("var") is not None:
            out.append(("var", m.group("var") + (m.group("varfields") or "")))
        else:
            out.append((kind, m.group(kind)))
    return out


def _parse_pipeline(toks: list, template: str) -> tuple[list[str], list]:
    """`$a, $b := cmd args | cmd args` -> (declared names, commands)."""
    declare = []
    for i, (kind, val) in enumerate(toks):
        if kind == "op" and val in (":=", "="):
            names = [v for k, v in toks[:i] if k == "var"]
            if not names or any(k not in ("var", "op") for k, _ in toks[:i]):
                raise _bad(template, "bad variable declaration")
            declare, toks = names, toks[i + 1:]
            break
    commands, current, stack = [], [], []
    for kind, val in toks:
        if kind == "op" and val == "(":
            stack.append((commands, current))
            commands, current = [], []
        elif kind == "op" and val == ")":
            if not stack:
                raise _bad(template, "unbalanced ')'")
            inner = commands + [current]
            commands, current = stack.pop()
            current.append(("pipe", inner))
        elif kind == "chain":
            if not current or current[-1][0] != "pipe":
                raise _bad(template, f"unexpected {val!r}")
            current[-1] = ("pipe", current[-1][1], val)
        elif kind == "op" and val == "|":
            if not current:
                raise _bad(template, "empty command before '|'")
            commands.append(current)
            current = []
        elif kind == "op" and val == ",":
            continue
        else:
            current.append((kind, val))
    if stack:
        raise _bad(template, "unbalanced '('")
    if not current:
        raise _bad(template, "empty action")
    commands.append(current)
    return declare, commands


def parse(template: str) -> list:
    pieces, pos = [], 0
    for m in _ACTION.finditer(template):
        text = template[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        pieces.append(("text", text))
        pieces.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())
    pieces.append(("text", template[pos:]))
    if "{{" in "".join(t for k, t in pieces if k == "text") or "}}" in "".join(t for k, t in pieces if k == "text"):
        raise _bad(template, "unclosed action")

    root: list = []
    # (body being filled, its block, True when opened by `else if` and so closed by the same end)
    stack: list[tuple[list, Block | None, bool]] = [(root, None, False)]
    for kind, src in pieces:
        body, block, chained = stack[-1]
        if kind == "text":
            if src:
                body.append(Text(src))
            continue
        src = src.strip()
        if src.startswith("/*"):
            continue  # a comment
        word = src.split(None, 1)[0] if src else ""
        rest = src[len(word):]
        if word in ("if", "range", "with"):
            declare, pipeline = _parse_pipeline(_tokens(rest, template), template)
            new = Block(word, pipeline, declare, [])
            body.append(new)
            stack.append((new.body, new, False))
        elif word == "else":
            if block is None:
                raise _bad(template, "{{else}} outside if/range/with")
            stack[-1] = (block.orelse, block, chained)
            if rest.split(None, 1)[:1] == ["if"]:
                declare, pipeline = _parse_pipeline(_tokens(rest.strip()[2:], template), template)
                nested = Block("if", pipeline, declare, [])
                block.orelse.append(nested)
                stack.append((nested.body, nested, True))
        elif word == "end":
            if block is None:
                raise _bad(template, "{{end}} without if/range/with")
            while stack.pop()[2]:
                pass
        elif word in ("define", "template", "block", "break", "continue"):
            raise _bad(template, f"{{{{{word}}}}} is not supported")
        else:
            declare, pipeline = _parse_pipeline(_tokens(src, template), template)
            body.append(Action(pipeline, declare))
    if len(stack) != 1:
        raise _bad(template, "missing {{end}}")
    return root


# ---- values as Go prints them ----------------------------------------------------------------

class _NoValue:
    def __str__(self):
        return "<no value>"


NO_VALUE = _NoValue()


def go_str(value) -> str:
    if value is None:
        return "<nil>"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def _truthy(value) -> bool:
    return not (value is None or value is NO_VALUE or value is False or value == 0 or value == ""
                or (isinstance(value, (list, tuple, dict)) and not value))


def _go_printf(fmt: str, *args) -> str:
    out, i, args = [], 0, list(args)
    spec = re.compile(r"%([-+ 0#]*\d*(?:\.\d+)?)([svdqtxfgv%])")
    pos = 0
    for m in spec.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        arg = args[i] if i < len(args) else NO_VALUE
        i += 1
        if verb in "sv":
            out.append(("%" + flags + "s") % go_str(arg))
        elif verb == "q":
            out.append(_json.dumps(go_str(arg)))
        elif verb == "d":
            out.append(("%" + flags + "d") % int(arg))
        elif verb in "fg":
            out.append(("%" + flags + verb) % float(arg))
        elif verb == "x":
            out.append(("%" + flags + "x") % int(arg) if isinstance(arg, int) else go_str(arg).encode().hex())
        elif verb == "t":
            out.append(go_str(bool(arg)))
    out.append(fmt[pos:])
    return "".join(out)


def _index(value, *keys):
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            if isinstance(value, dict):
                return NO_VALUE
            raise UserError(f"--format: index of {go_str(key)} in {type(value).__name__} failed") from None
    return value


def _cmp(op):
    def compare(a, b, *more):
        if op == "eq":
            return any(a == x for x in (b, *more))
        try:
            return {"ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
        except TypeError:
            raise UserError(f"--format: cannot compare {go_str(a)} and {go_str(b)}") from None
    return compare


FUNCTIONS = {
    "json": lambda v: _json.dumps(None if v is NO_VALUE else v, separators=(",", ":"), sort_keys=False),
    "index": _index,
    "len": lambda v: len(v),
    "join": lambda v, sep: sep.join(go_str(x) for x in v),
    "split": lambda s, sep: s.split(sep),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "title": lambda s: go_str(s).title(),
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "printf": _go_printf,
    "eq": _cmp("eq"), "ne": _cmp("ne"), "lt": _cmp("lt"), "le": _cmp("le"), "gt": _cmp("gt"), "ge": _cmp("ge"),
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
    "not": lambda v: not _truthy(v),
    "slice": lambda v, *ij: v[slice(*ij)],
    "truncate": lambda s, n: go_str(s)[:int(n)],
    "pad": lambda s, a, b: " " * int(a) + go_str(s) + " " * int(b),
}


# ---- execution -------------------------------------------------------------------------------

class _Run:
    def __init__(self, template: str, root):
        self.template = template
        self.vars: list[dict] = [{"$": root}]

    def lookup_var(self, name: str):
        for scope in reversed(self.vars):
            if name in scope:
                return scope[name]
        raise _bad(self.template, f"undefined variable {name}")

    def fields(self, value, path: str):
        for name in path.split(".")[1:]:
            if not name:
                continue
            if isinstance(value, dict):
                value = value.get(name, NO_VALUE)
            elif value is NO_VALUE or value is None:
                return NO_VALUE
            else:
                raise UserError(f"--format: can't evaluate field {name} in type {type(value).__name__}")
        return value

    def operand(self, tok, dot):
        kind, val = tok[0], tok[1]
        if kind == "pipe" and len(tok) == 3:
            return self.fields(self.pipeline(val, dot), tok[2])
        if kind == "str":
            return val[1:-1] if val.startswith("`") else _json.loads(val)
        if kind == "num":
            return float(val) if "." in val else int(val)
        if kind == "field":
            return dot if val == "." else self.fields(dot, val)
        if kind == "var":
            name, _, rest = val.partition(".")
            return self.fields(self.lookup_var(name), "." + rest) if rest else self.lookup_var(name)
        if kind == "pipe":
            return self.pipeline(val, dot)
        if kind == "ident":
            if val in ("true", "false"):
                return val == "true"
            if val == "nil":
                return None
            return self.call(val, [], dot)
        raise _bad(self.template, f"unexpected {val!r}")

    def call(self, name, args, dot):
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise _bad(self.template, f'function "{name}" not defined')
        try:
            return fn(*args)
        except TypeError:
            raise _bad(self.template, f"wrong number or type of arguments for {name}") from None

    def pipeline(self, commands, dot, declare=()):
        value, have = None, False
        for cmd in commands:
            head, rest = cmd[0], cmd[1:]
            if head[0] == "ident" and head[1] not in ("true", "false", "nil"):
                args = [self.operand(t, dot) for t in rest] + ([value] if have else [])
                value = self.call(head[1], args, dot)
            else:
                if rest or have:
                    raise _bad(self.template, f"can't give arguments to a non-function {head[1]!r}")
                value = self.operand(head, dot)
            have = True
        for name in declare:
            self.vars[-1][name] = value
        return value

    def run(self, nodes, dot, out: list):
        for node in nodes:
            if isinstance(node, Text):
                out.append(node.text)
            elif isinstance(node, Action):
                value = self.pipeline(node.pipeline, dot, node.declare)
                if not node.declare:
                    out.append(go_str(value))
            else:
                self.block(node, dot, out)

    def block(self, node: Block, dot, out):
        if node.kind == "range":
            value = self.pipeline(node.pipeline, dot)
            items = (sorted(value.items()) if isinstance(value, dict)
                     else list(enumerate(value)) if isinstance(value, (list, tuple))
                     else [] if value in (None, NO_VALUE) else None)
            if items is None:
                raise UserError(f"--format: range can't iterate over {go_str(value)}")
            if not items:
                self.run(node.orelse, dot, out)
            for key, item in items:
                self.vars.append({})
                if len(node.declare) == 1:
                    self.vars[-1][node.declare[0]] = item
                elif len(node.declare) == 2:
                    self.vars[-1][node.declare[0]], self.vars[-1][node.declare[1]] = key, item
                self.run(node.body, item, out)
                self.vars.pop()
            return
        self.vars.append({})
        value = self.pipeline(node.pipeline, dot, node.declare)
        if _truthy(value):
            self.run(node.body, value if node.kind == "with" else dot, out)
        else:
            self.run(node.orelse, dot, out)
        self.vars.pop()


def render(template: str, data) -> str:
    """Run `template` on `data` (dicts, lists and scalars), as `docker ... --format` does."""
    return Template(template).render(data)


class Template:
    def __init__(self, template: str):
        self.source = template
        self.nodes = parse(template)

    def render(self, data) -> str:
        out: list[str] = []
        _Run(self.source, data).run(self.nodes, data, out)
        return "".join(out)


def table_header(template: str, headers: dict[str, str]) -> tuple[str, str]:
    """`table {{.ID}}\\t{{.Name}}` -> (row template, header line), headers named as Docker
    names them (e.g. {"ID": "NETWORK ID"}); a field without a known header is upper-cased."""
    row = template[len("table"):].lstrip()
    row = row.replace("\\t", "\t").replace("\\n", "\n")

    def head(m):
        name = m.group(1)
        return headers.get(name, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper())
    header = re.sub(r"\{\{-?\s*\.([A-Za-z_]\w*)\s*-?\}\}", head, row)
    if "{{" in header:
        raise UserError(f"invalid --format template {template!r}: a table row may hold only {{{{.Field}}}} columns")
    return row, header
