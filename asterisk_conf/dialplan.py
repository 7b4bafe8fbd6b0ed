"""The dialplan as `check()` sees it: contexts, extensions, labels and application calls.

Built from the scanned `extensions.conf` and the files it `#include`s. It follows the syntax
of pbx_config (Asterisk 22, `configs/samples/extensions.conf.sample`):
`exten => ext,prio,App(args)`, `same => prio,App(args)`, priorities `1`, `n`, `hint` with an
optional `(label)`, `include => ctx`.
Arguments split on `,` outside `()`, `[]`, `{}` and quotes, as `AST_STANDARD_APP_ARGS` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from asterisk_conf.confparse import ConfFile

NOT_CONTEXTS = frozenset({"general", "globals"})
_APP = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\s*(?:\((.*)\)?)?", re.S)
_PRIORITY = re.compile(r"([^()\s]+)\s*(?:\(([^)]*)\))?")


@dataclass(frozen=True, slots=True)
class Step:
    """One dialplan priority that runs an application."""

    file: str
    line: int
    context: str
    exten: str
    app: str
    args: str


@dataclass(slots=True)
class Context:
    """A dialplan context: its extensions (with their labels) and includes."""

    name: str
    file: str
    line: int
    extens: dict[str, set[str]] = field(default_factory=dict)
    includes: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, name)


@dataclass(slots=True)
class Dialplan:
    contexts: dict[str, Context] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    globals: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # name -> value, at

    def find_exten(self, context: str, exten: str) -> set[str] | None:
        """The labels of `exten` in `context` (or a context it includes); None if not there."""
        seen: set[str] = set()
        todo = [context]
        while todo:
            name = todo.pop()
            if name in seen or name not in self.contexts:
                continue
            seen.add(name)
            ctx = self.contexts[name]
            if exten in ctx.extens:
                return ctx.extens[exten]
            for candidate, labels in ctx.extens.items():
                if candidate.startswith("_") and matches(candidate, exten):
                    return labels
            todo.extend(inc for _, _, inc in ctx.includes)
        return None


def build(files: list[ConfFile]) -> Dialplan:
    """The dialplan of `files` (extensions.conf first, then what it includes)."""
    plan = Dialplan()
    for conf in files:
        for section in conf.sections:
            if section.name == "globals":
                for entry in section.entries:
                    plan.globals[entry.key] = (entry.value, conf.name, entry.line)
                continue
            if section.name in NOT_CONTEXTS or section.is_template:
                continue
            ctx = plan.contexts.setdefault(
                section.name, Context(section.name, conf.name, section.line)
            )
            exten = ""
            for entry in section.entries:
                key = entry.key.lower()
                if key == "include":
                    ctx.includes.append((conf.name, entry.line, entry.value.split(",")[0].strip()))
                    continue
                if key == "exten":
                    exten, _, rest = entry.value.partition(",")
                    exten = exten.strip().split("/")[0]
                elif key != "same":
                    continue
                else:
                    rest = entry.value
                priority, _, app = rest.partition(",")
                parsed = _PRIORITY.fullmatch(priority.strip())
                labels = ctx.extens.setdefault(exten, set())
                if parsed and parsed.group(2):
                    labels.add(parsed.group(2).strip())
                if parsed and parsed.group(1).lower() == "hint":
                    continue
                name, args = split_app(app)
                if name:
                    plan.steps.append(Step(conf.name, entry.line, ctx.name, exten, name, args))
    return plan


def split_app(text: str) -> tuple[str, str]:
    """`App(args)` -> (`App`, `args`); the old `App,args` form is accepted too."""
    text = text.strip()
    match = _APP.match(text)
    if not match:
        return "", ""
    name = match.group(1)
    rest = text[match.end(1) :].lstrip()
    if rest.startswith("("):
        inner = rest[1:]
        return name, inner[:-1] if inner.endswith(")") else inner
    if rest.startswith(","):
        return name, rest[1:]
    return name, rest


def split_args(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside brackets and quotes (backslash escapes the next character)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and char == sep:
            parts.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    parts.append("".join(current).strip())
    return parts


def split_condition(text: str) -> tuple[str, list[str]]:
    """`cond?true:false` (GotoIf, GosubIf) -> (`cond`, [`true`, `false`]), empty ones dropped."""
    parts = split_args(text, "?")
    if len(parts) < 2:
        return text, []
    condition, branches = parts[0], "?".join(parts[1:])
    return condition, [b for b in split_args(branches, ":") if b]


def matches(pattern: str, exten: str) -> bool:
    """Whether extension pattern `pattern` (`_NXX.`) matches the literal `exten`."""
    return re.fullmatch(_pattern_regex(pattern), exten) is not None


def _pattern_regex(pattern: str) -> str:
    out = []
    body = pattern[1:]
    i = 0
    while i < len(body):
        char = body[i]
        upper = char.upper()
        if upper == "X":
            out.append("[0-9]")
        elif upper == "Z":
            out.append("[1-9]")
        elif upper == "N":
            out.append("[2-9]")
        elif char == ".":
            out.append(".+")
        elif char == "!":
            out.append(".*")
        elif char == "[":
            end = body.find("]", i)
            if end < 0:
                return re.escape(pattern)
            out.append("[" + body[i + 1 : end].replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)
