"""Read an Asterisk .conf file: pyst2's parser for the syntax, our line scanner for the detail.

pyst2 (`asterisk.config.Config`) is the reference parser the issue asks for, but it knows
neither `#include` lines nor template headers such as `[name](!)`, and it stops at the first
error. So every file is read twice:

* pyst2 parses a copy in which `#include`/`#tryinclude`/`#exec` lines are blanked and template
  headers reduced to `[name]` (both are valid Asterisk syntax); what it rejects is a problem;
* a light scanner keeps what `check()` needs with line numbers: sections (with template
  markers), `key = value` / `key => value` entries, `#include` lines. Comments follow
  Asterisk's rules (`;` to the end of the line unless written `\\;`, `;-- ... --;` blocks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import asterisk.config

from asterisk_conf.model import Problem

_SECTION = re.compile(r"\[([^\]]*)\]\s*(?:\(([^)]*)\))?")
_DIRECTIVE = re.compile(r"#\s*(include|tryinclude|exec)\s+(.*)")


@dataclass(frozen=True, slots=True)
class Entry:
    """One `key = value` (or `key => value`) line."""

    line: int
    key: str
    value: str


@dataclass(slots=True)
class Section:
    """One `[name]` block; `parents` are the templates named in `[name](a,b)`."""

    line: int
    name: str
    is_template: bool = False
    parents: tuple[str, ...] = ()
    entries: list[Entry] = field(default_factory=list)

    def get(self, key: str) -> Entry | None:
        """The last entry named `key` (Asterisk: a later value wins)."""
        found = None
        for entry in self.entries:
            if entry.key == key:
                found = entry
        return found


@dataclass(slots=True)
class ConfFile:
    """A scanned file: sections in order, `#include` targets, syntax problems."""

    name: str
    sections: list[Section] = field(default_factory=list)
    includes: list[tuple[int, str]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def sections_named(self, name: str) -> list[Section]:
        return [s for s in self.sections if s.name == name]


class _TextConfig(asterisk.config.Config):  # type: ignore[misc]
    """pyst2's parser fed from memory instead of a path."""

    def __init__(self, name: str, lines: list[str]) -> None:
        self._text_lines = lines
        super().__init__(name)

    def load(self) -> None:
        self.raw_lines = self._text_lines


def parse(name: str, text: str) -> ConfFile:
    """Scan `text` (the file `name`) and check it with pyst2."""
    raw = text.splitlines()
    conf = _scan(name, raw)
    try:
        _TextConfig(name, _for_pyst2(raw))
    except asterisk.config.ParseError as err:
        line, message = (*err.args, 0, "")[:2]
        if not any(p.line == line for p in conf.problems):
            conf.problems.append(Problem(name, int(line), f"pyst2: {message}"))
    return conf


def pyst2_categories(name: str, text: str) -> list[str]:
    """The section names pyst2 reads in `text` (after blanking `#include` lines and reducing
    template headers); raises `asterisk.config.ParseError` where pyst2 rejects the file."""
    config = _TextConfig(name, _for_pyst2(text.splitlines()))
    return [str(category.name) for category in config.categories]


def strip_comment(line: str) -> str:
    """`line` without its `;` comment (a `\\;` is a literal semicolon and stays)."""
    out = []
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\" and i + 1 < len(line) and line[i + 1] == ";":
            out.append("\\;")
            i += 2
            continue
        if char == ";":
            break
        out.append(char)
        i += 1
    return "".join(out).strip()


def _for_pyst2(raw: list[str]) -> list[str]:
    lines = []
    for text in raw:
        stripped = text.strip()
        if stripped.startswith("#"):
            lines.append("\n")
            continue
        header = _SECTION.fullmatch(strip_comment(stripped))
        if header and header.group(2) is not None:
            lines.append(f"[{header.group(1)}]\n")
            continue
        lines.append(text + "\n")
    return lines


def _scan(name: str, raw: list[str]) -> ConfFile:
    conf = ConfFile(name)
    current: Section | None = None
    in_block = False
    for number, text in enumerate(raw, start=1):
        if in_block:
            end = text.find("--;")
            if end < 0:
                continue
            text = text[end + 3 :]
            in_block = False
        start = text.find(";--")
        if start >= 0 and (start == 0 or text[start - 1] != "\\"):
            end = text.find("--;", start + 3)
            if end < 0:
                in_block = True
                text = text[:start]
            else:
                text = text[:start] + text[end + 3 :]
        line = strip_comment(text)
        if not line:
            continue
        directive = _DIRECTIVE.fullmatch(line)
        if directive:
            if directive.group(1) != "exec":
                conf.includes.append((number, directive.group(2).strip().strip('"<>')))
            continue
        header = _SECTION.fullmatch(line)
        if header:
            parents = tuple(
                p.strip() for p in (header.group(2) or "").split(",") if p.strip() not in ("", "!")
            )
            current = Section(
                number,
                header.group(1).strip(),
                is_template="!" in (header.group(2) or ""),
                parents=parents,
            )
            conf.sections.append(current)
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            conf.problems.append(Problem(name, number, f"not a 'name = value' line: {line!r}"))
            continue
        if current is None:
            conf.problems.append(Problem(name, number, "setting before any [section]"))
            continue
        value = value[1:] if value.startswith(">") else value
        current.entries.append(Entry(number, key.strip(), value.strip()))
    return conf
