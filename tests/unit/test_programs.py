"""The bootstrap installs every program the code, the tests, the demos and the labs run.

The scan reads the source (no root): argv lists handed to subprocess/exec, shell strings handed to
`sandbox.sh`/`sandbox.ns`/`bash -c`, and names asked for through `need()` and `programs.require()`.
Each program found must be on netkit/programs.py's list, which scripts/bootstrap.sh installs from.
"""
from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys

import pytest

from netkit import programs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = ("netkit", "tests", "scripts", "labs")
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "execvp", "execv", "spawn"}
SHELL_HELPERS = {"sh": 0, "ns": 1, "host_sh": 1}  # Sandbox.sh(cmd), Sandbox.ns(netns, cmd), World.host_sh(host, cmd): index of the command
ASKERS = {"need", "require", "find"}
# Shell keywords (the command follows them) and builtins (the whole command runs no program).
SHELL_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "exec", "time", "!", "{", "}"}
SHELL_BUILTINS = {"echo", "cd", "true", "false", "exit", "set", "export", "read", "local", "return", "shift",
                  "command", "printf", "fi", "done", "esac", "case", "[", "[[", "test", "wait", "trap", "kill",
                  "break", "continue", "source", ".", "eval", "unset", "shopt", "type"}
PROGRAM_NAME = re.compile(r"^[a-z][a-z0-9.+_-]*$")


def _text(node: ast.AST) -> str | None:
    """A string constant, or an f-string with each interpolation replaced by a placeholder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "__var__" for v in node.values)
    return None


def programs_in_shell(cmd: str) -> set[str]:
    """First word of every command in a shell string, and the command behind `ip netns exec NS`.
    Tokenised as the shell does (quotes kept whole), split at |, &&, ||, ;, $( and newlines;
    `for VAR in LIST` and assignments are not commands."""
    cmd = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_@#?*0-9]\w*", "__var__", cmd.replace("\\\n", " "))  # variables
    lexer = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lexer.whitespace = " \t\r"
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote in an f-string fragment
        return set()
    # shlex returns a run of punctuation as one token (`);`): split it into the shell's operators
    tokens = [part for tok in tokens
              for part in (re.findall(r"&&|\|\||;;|.", tok) if set(tok) <= set("();<>|&") else [tok])]
    found, command, for_list, depth, parens = set(), [], False, 0, 0
    for tok in tokens + ["\n"]:
        if tok == "for":
            for_list, depth = True, 0
        if for_list:  # `for VAR in WORDS; do`: only a $(...) inside WORDS runs something
            depth += (tok == "(") - (tok == ")")
            if depth == 0 and tok != ")":
                for_list = tok != "do"
                continue
        if tok == "$":  # `$(`: the "(" follows
            continue
        parens += (tok == "(") - (tok == ")")
        if parens < 0:  # `pattern)` of a case statement
            parens, command = 0, []
            continue
        if tok in ("\n", ";", "|", "||", "&&", "&", "(", ")", "`", "{", "}", ";;"):
            words = [w for w in command if "=" not in w or w.startswith("-")]
            while words and words[0] in SHELL_KEYWORDS:
                words = words[1:]
            if words and words[0] not in SHELL_BUILTINS:
                found.add(words[0])
                if words[:3] == ["ip", "netns", "exec"] and len(words) > 4:
                    found.add(words[4])
            command = []
        else:
            command.append(tok)
    return {w for w in found if PROGRAM_NAME.match(w) and "__var__" not in w}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            yield name, node


def programs_in_python(source: str) -> set[str]:
    found: set[str] = set()
    for name, call in _calls(ast.parse(source)):
        args = call.args
        if name in RUNNERS and args:
            first = args[0]
            if isinstance(first, (ast.List, ast.Tuple)) and first.elts:
                words = [_text(e) for e in first.elts]
                if words[0] is not None:
                    if words[0] == "bash" and words[1:2] == ["-c"] and len(words) > 2 and words[2]:
                        found |= programs_in_shell(words[2])
                    if "/" not in words[0]:
                        found.add(words[0])
                    if words[:3] == ["ip", "netns", "exec"] and len(words) > 4 and words[4]:
                        found.add(words[4])
        elif name in SHELL_HELPERS and len(args) > SHELL_HELPERS[name]:
            cmd = _text(args[SHELL_HELPERS[name]])
            if cmd is not None:
                found |= programs_in_shell(cmd)
        elif name in ASKERS and args and _text(args[0]) is not None:
            found.add(_text(args[0]))
    return {p for p in found if PROGRAM_NAME.match(p)}


def _files(ext: str):
    for top in SOURCES:
        for base, _dirs, names in os.walk(os.path.join(ROOT, top)):
            for n in names:
                if n.endswith(ext):
                    yield os.path.join(base, n)


def _shell_scripts():
    for top in ("scripts", "labs", ".ci"):
        for base, _dirs, names in os.walk(os.path.join(ROOT, top)):
            for n in names:
                path = os.path.join(base, n)
                with open(path, "rb") as fh:
                    if fh.read(20).startswith(b"#!/usr/bin/env bash") or n.endswith(".sh"):
                        yield path


def test_every_program_run_is_on_the_bootstrap_list():
    used: dict[str, set[str]] = {}
    for path in _files(".py"):
        with open(path) as fh:
            for prog in programs_in_python(fh.read()):
                used.setdefault(prog, set()).add(os.path.relpath(path, ROOT))
    missing = {p: sorted(where) for p, where in used.items()
               if p not in programs.PROGRAMS and p not in ("python", "python3")}
    assert not missing, f"programs run but not on netkit/programs.py's list: {missing}"
    # The scan must see the programs the suite is known to run, or it scans nothing.
    assert {"ip", "iptables-legacy-save", "nft", "conntrack", "tcpdump", "unshare"} <= set(used)


def test_shell_scripts_run_only_listed_programs():
    # What only the bootstrap itself runs, before or while it installs the rest.
    bootstrap_only = {"python3", "apt-get", "ldconfig"}
    seen = set()
    for path in _shell_scripts():
        with open(path) as fh:
            text = fh.read()
        functions = set(re.findall(r"^([A-Za-z_][\w-]*)\(\)", text, re.M))
        for prog in programs_in_shell(text) - bootstrap_only - functions:
            seen.add(prog)
            assert prog in programs.PROGRAMS, \
                f"{os.path.relpath(path, ROOT)} runs '{prog}', which netkit/programs.py does not list"
    assert {"bash", "grep", "ip"} <= seen  # the scan sees real commands


def test_the_scan_finds_programs_in_each_form():
    src = '''
subprocess.run(["tcpdump", "-n"])
sandbox.sh("iptables-legacy-save -t nat | grep -c x && brctl show")
sandbox.ns("web", f"{sys.executable} -c pass; sysctl -n x")
subprocess.Popen(["bash", "-c", "for i in $(seq 1 3); do nft list ruleset; done"])
need("conntrack")
subprocess.run(["ip", "netns", "exec", "a", "ethtool", "-k", "eth0"])
'''
    assert programs_in_python(src) == {"tcpdump", "iptables-legacy-save", "grep", "brctl", "sysctl",
                                       "bash", "seq", "nft", "conntrack", "ip", "ethtool"}
    assert programs_in_shell("nft 'add chain ip g s { type filter hook forward priority 0; policy drop; }'") == {"nft"}
    assert programs_in_shell("for n in $(seq 0 9); do ip -n c$n addr; done") == {"seq", "ip"}


def test_bootstrap_reads_the_same_list():
    out = subprocess.run([sys.executable, "-m", "netkit.programs"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split("\n")
    listed = {tuple(line.split()[1:]) for line in out if line.startswith("program ")}
    assert listed == set(programs.PROGRAMS.items())
    with open(os.path.join(ROOT, "scripts", "bootstrap.sh")) as fh:
        assert "python3 -m netkit.programs" in fh.read()


def test_need_fails_naming_the_bootstrap_when_a_program_is_missing(monkeypatch, tmp_path):
    """A PATH without the tools, as on a fresh machine before the bootstrap."""
    from required import need

    monkeypatch.setenv("PATH", str(tmp_path))
    for prog in ("nft", "brctl", "tcpdump", "conntrack", "iptables-legacy-save"):
        with pytest.raises(pytest.fail.Exception) as failed:
            need(prog)
        msg = str(failed.value)
        assert prog in msg and programs.PROGRAMS[prog] in msg and "scripts/bootstrap.sh" in msg, msg


def test_need_passes_when_the_program_is_there(monkeypatch, tmp_path):
    from required import need

    tool = tmp_path / "nft"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    need("nft")  # no failure


def test_runtime_require_names_the_package(monkeypatch, tmp_path):
    from netkit.errors import EnvError

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvError, match=r"iptables-legacy-save not found: install the Debian package 'iptables'"):
        programs.require("iptables-legacy-save")
    with pytest.raises(KeyError):
        programs.find("no-such" + "-tool")
