"""An extensions.conf subset: parser, extension matching and ``${...}`` / ``$[...]`` substitution.

Supported (pbx_config / pbx.c behaviour, the subset our dialplans use): ``[context]``,
``[globals]``, ``exten => x,1(label),App(args)``, ``same => n,...``, ``n`` and ``n(label)``
priorities, ``include => ctx``, ``;`` comments, patterns ``_X``, ``_Z``, ``_N``, ``[1-5]``, ``.``
and ``!``, variables ``${VAR}`` and ``${VAR:offset:length}``, the functions ``CALLERID(...)``,
``CONNECTEDLINE(...)``, ``IF(c?a:b)`` and those of :mod:`asterisk_sim.functions` (``FIELDQTY``,
``CUT``, ``LEN``, ``ISNULL``, ``EXISTS``, ``LOCAL``), and ``$[ ]`` with ``=``, ``!=``, ``<``,
``>``, ``<=``, ``>=``, ``&``, ``|``, ``+``, ``-``. Anything else substitutes as empty, like an
unknown variable.

``#include "file"`` (and ``#tryinclude``) splices the named file in place, as config.c does;
a relative name is read through the `read_include` callback given to :func:`parse_dialplan`
(:func:`load_dialplan` and :func:`read_dialplan_text` resolve it against the main file's folder,
which is Asterisk's config directory for a file in /etc/asterisk). ``#exec`` is not supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from asterisk_sim.errors import DialplanError
from asterisk_sim.functions import evaluate

__all__ = [
    "Dialplan",
    "IncludeReader",
    "Priority",
    "expand_includes",
    "load_dialplan",
    "parse_dialplan",
    "read_dialplan_text",
    "split_app_args",
    "substitute",
]

IncludeReader = Callable[[str], str]  # the name after #include (unquoted) -> that file's text
MAX_INCLUDE_DEPTH = 10


@dataclass(frozen=True, slots=True)
class Priority:
    """One dialplan step: application name and its raw (unsubstituted) argument string."""

    number: int
    app: str
    args: str
    label: str | None = None


@dataclass
class _Extension:
    name: str
    priorities: dict[int, Priority] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    last: int = 0


@dataclass
class _Context:
    name: str
    extensions: dict[str, _Extension] = field(default_factory=dict)
    includes: list[str] = field(default_factory=list)


def _strip_comment(line: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in line:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
            out.append(ch)
        elif ch == ";":
            break
        else:
            out.append(ch)
    return "".join(out).replace("\\;", ";").strip()


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    body = pattern[1:]
    while i < len(body):
        ch = body[i]
        up = ch.upper()
        if up == "X":
            parts.append("[0-9]")
        elif up == "Z":
            parts.append("[1-9]")
        elif up == "N":
            parts.append("[2-9]")
        elif ch == ".":
            parts.append(".+")
        elif ch == "!":
            parts.append(".*")
        elif ch == "[":
            end = body.find("]", i)
            if end < 0:
                raise DialplanError(f"unterminated [ in pattern {pattern!r}")
            parts.append("[" + body[i + 1 : end] + "]")
            i = end
        else:
            parts.append(re.escape(ch))
        i += 1
    return re.compile("".join(parts) + r"\Z")


class Dialplan:
    """Parsed contexts plus the [globals] section."""

    def __init__(self) -> None:
        self.contexts: dict[str, _Context] = {}
        self.globals: dict[str, str] = {}
        self._patterns: dict[str, re.Pattern[str]] = {}

    def has_context(self, context: str) -> bool:
        return context in self.contexts

    def _match(self, context: str, exten: str, seen: set[str]) -> _Extension | None:
        ctx = self.contexts.get(context)
        if ctx is None or context in seen:
            return None
        seen.add(context)
        found = ctx.extensions.get(exten)
        if found is not None:
            return found
        for name, ext in ctx.extensions.items():
            if name.startswith("_"):
                regex = self._patterns.get(name)
                if regex is None:
                    regex = self._patterns[name] = _pattern_regex(name)
                if regex.match(exten):
                    return ext
        for inc in ctx.includes:
            hit = self._match(inc, exten, seen)
            if hit is not None:
                return hit
        return None

    def has_extension(self, context: str, exten: str, priority: int = 1) -> bool:
        return self.find(context, exten, priority) is not None

    def find(self, context: str, exten: str, priority: int) -> Priority | None:
        """The step at (context, exten, priority), following includes and patterns."""
        ext = self._match(context, exten, set())
        if ext is None:
            return None
        return ext.priorities.get(priority)

    def label(self, context: str, exten: str, label: str) -> int | None:
        ext = self._match(context, exten, set())
        return None if ext is None else ext.labels.get(label)


def split_app_args(text: str) -> tuple[str, str]:
    """``App(args)`` -> ("App", "args"); a bare ``App`` has empty args."""
    text = text.strip()
    paren = text.find("(")
    if paren < 0:
        return text, ""
    name = text[:paren].strip()
    rest = text[paren + 1 :]
    if rest.endswith(")"):
        rest = rest[:-1]
    return name, rest


def _parse_priority(token: str, ext: _Extension, line_no: int) -> tuple[int, str | None]:
    token = token.strip()
    label: str | None = None
    m = re.fullmatch(r"(\w+|n|\+\d+)\((\w+)\)", token)
    if m:
        token, label = m.group(1), m.group(2)
    if token == "n":
        number = ext.last + 1
    elif token.startswith("+") and token[1:].isdigit():
        number = ext.last + int(token[1:])
    elif token.isdigit():
        number = int(token)
    elif token == "hint":
        return -1, None
    else:
        raise DialplanError(f"line {line_no}: bad priority {token!r}")
    return number, label


def _directive(line: str) -> tuple[str, str] | None:
    """``#include "x"`` -> ("include", "x"); None for an ordinary line."""
    if not line.startswith("#"):
        return None
    word, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    if len(rest) >= 2 and (rest[0], rest[-1]) in (('"', '"'), ("<", ">")):
        rest = rest[1:-1]
    return word.strip().lower(), rest.strip()


def _lines(
    text: str, origin: str, read_include: IncludeReader | None, stack: tuple[str, ...]
) -> Iterator[tuple[str, int, str]]:
    """(origin, line number, line without comment) for `text` with its #includes spliced in."""
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line:
            continue
        directive = _directive(line)
        if directive is None:
            yield origin, line_no, line
            continue
        word, name = directive
        where = f"{origin}:{line_no}"
        if word not in ("include", "tryinclude"):
            raise DialplanError(f"{where}: #{word} is not supported by the simulator")
        if read_include is None:
            raise DialplanError(
                f"{where}: #include {name!r} needs a folder to read from: "
                "use load_dialplan(path) or read_dialplan_text(path)"
            )
        if name in stack or len(stack) > MAX_INCLUDE_DEPTH:
            raise DialplanError(f"{where}: #include {name!r} loops ({' -> '.join(stack)})")
        try:
            included = read_include(name)
        except (OSError, KeyError) as err:
            if word == "tryinclude":
                continue
            raise DialplanError(f"{where}: cannot read #include {name!r}: {err}") from err
        yield from _lines(included, name, read_include, (*stack, name))


def parse_dialplan(
    text: str,
    plan: Dialplan | None = None,
    *,
    read_include: IncludeReader | None = None,
    origin: str = "extensions.conf",
) -> Dialplan:
    """Parse extensions.conf text (into `plan` if given: contexts are merged).

    ``#include`` lines are read through `read_include` (without one they raise
    :class:`DialplanError`); `origin` names the text in error messages.
    """
    plan = plan if plan is not None else Dialplan()
    current: _Context | None = None
    section = ""
    last_ext: _Extension | None = None
    for file_name, line_no, line in _lines(text, origin, read_include, (origin,)):
        raw = line
        if line.startswith("["):
            end = line.find("]")
            if end < 0:
                raise DialplanError(f"{file_name}:{line_no}: bad section header {raw!r}")
            section = line[1:end].strip()
            last_ext = None
            if section in ("general", "globals"):
                current = None
            else:
                current = plan.contexts.setdefault(section, _Context(section))
            continue
        key, sep, value = line.partition("=>")
        if not sep:
            key, sep, value = line.partition("=")
        if not sep:
            raise DialplanError(f"{file_name}:{line_no}: expected 'key => value': {raw!r}")
        key, value = key.strip().lower(), value.strip()
        if section == "globals":
            plan.globals[line.partition("=")[0].strip()] = line.partition("=")[2].strip()
            continue
        if current is None:
            continue
        if key == "include":
            current.includes.append(value)
            continue
        if key not in ("exten", "same"):
            continue
        if key == "exten":
            name, _, rest = value.partition(",")
            name = name.strip()
            ext = current.extensions.setdefault(name, _Extension(name))
        else:
            if last_ext is None:
                raise DialplanError(f"{file_name}:{line_no}: 'same' without a previous 'exten'")
            ext, rest = last_ext, value
        prio_token, _, app_text = rest.partition(",")
        number, label = _parse_priority(prio_token, ext, line_no)
        last_ext = ext
        if number < 0:
            continue
        app, args = split_app_args(app_text)
        ext.priorities[number] = Priority(number, app, args, label)
        ext.last = number
        if label:
            ext.labels[label] = number
    return plan


def _folder_reader(folder: Path) -> IncludeReader:
    def read(name: str) -> str:
        path = Path(name)
        return (path if path.is_absolute() else folder / path).read_text(encoding="utf-8")

    return read


def load_dialplan(source: str | Path) -> Dialplan:
    """Parse a path to extensions.conf (#includes relative to its folder), or the text itself.

    Text (a string with a newline) can only #include absolute paths.
    """
    if isinstance(source, Path) or "\n" not in source:
        path = Path(source)
        return parse_dialplan(
            path.read_text(encoding="utf-8"),
            read_include=_folder_reader(path.parent),
            origin=path.name,
        )
    return parse_dialplan(source, read_include=_folder_reader(Path("/")))


def expand_includes(
    text: str, read_include: IncludeReader, *, origin: str = "extensions.conf"
) -> str:
    """`text` with every #include spliced in (comments dropped): one self-contained dialplan.

    For callers that take dialplan *text*, such as ``AsteriskSimulator(text)``; the
    generator's output can be expanded straight from its dict: ``expand_includes(
    files["extensions.conf"], files.__getitem__)``.
    """
    return "".join(f"{line}\n" for _, _, line in _lines(text, origin, read_include, (origin,)))


def read_dialplan_text(path: Path) -> str:
    """The extensions.conf at `path` with its #includes (relative to its folder) spliced in."""
    return expand_includes(
        path.read_text(encoding="utf-8"), _folder_reader(path.parent), origin=path.name
    )


Resolver = Callable[[str], str | None]
FunctionCall = Callable[[str, str], str | None]


def _find_close(text: str, start: int, open_ch: str, close_ch: str) -> int:
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _eval_expr(expr: str) -> str:
    expr = expr.strip()
    for op in ("|", "&"):
        if op in expr:
            left, _, right = expr.partition(op)
            lv, rv = _eval_expr(left), _eval_expr(right)
            if op == "|":
                return lv if _truthy(lv) else rv
            return lv if _truthy(lv) and _truthy(rv) else "0"
    for op in ("!=", "=", ">=", "<=", ">", "<"):
        if op in expr:
            left, _, right = expr.partition(op)
            lv, rv = _eval_expr(left), _eval_expr(right)
            return "1" if _compare(lv, rv, op) else "0"
    for op in ("+", "-"):
        idx = expr.rfind(op)
        if idx > 0:
            left, right = _eval_expr(expr[:idx]), _eval_expr(expr[idx + 1 :])
            try:
                a, b = int(left), int(right)
            except ValueError:
                break
            return str(a + b if op == "+" else a - b)
    if len(expr) >= 2 and expr[0] == '"' and expr[-1] == '"':
        return expr[1:-1]
    return expr


def _truthy(value: str) -> bool:
    return value not in ("", "0")


def _compare(a: str, b: str, op: str) -> bool:
    try:
        x: float | str = float(a)
        y: float | str = float(b)
    except ValueError:
        x, y = a, b
    if op == "=":
        return x == y
    if op == "!=":
        return x != y
    if isinstance(x, float) and isinstance(y, float):
        return {">": x > y, "<": x < y, ">=": x >= y, "<=": x <= y}[op]
    return {">": str(x) > str(y), "<": str(x) < str(y), ">=": str(x) >= str(y)}.get(
        op, str(x) <= str(y)
    )


def substitute(text: str, variable: Resolver, function: FunctionCall) -> str:
    """Expand ``${...}`` and ``$[...]`` in `text` (pbx_substitute_variables_helper subset)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("${", i):
            end = _find_close(text, i + 1, "{", "}")
            if end < 0:
                out.append(text[i:])
                break
            inner = substitute(text[i + 2 : end], variable, function)
            out.append(_expand(inner, variable, function))
            i = end + 1
        elif text.startswith("$[", i):
            end = _find_close(text, i + 1, "[", "]")
            if end < 0:
                out.append(text[i:])
                break
            inner = substitute(text[i + 2 : end], variable, function)
            out.append(_eval_expr(inner))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _expand(inner: str, variable: Resolver, function: FunctionCall) -> str:
    if inner.endswith(")") and "(" in inner:
        name, _, args = inner[:-1].partition("(")
        name = name.strip().upper()
        if name == "IF":
            cond, _, branches = args.partition("?")
            yes, _, no = branches.partition(":")
            return yes if _truthy(_eval_expr(cond)) else no
        value = evaluate(name, args, variable)
        if value is not None:
            return value
        return function(name, args) or ""
    name, colon, rest = inner.partition(":")
    value = variable(name) or ""
    if colon:
        offset_text, _, length_text = rest.partition(":")
        try:
            offset = int(offset_text or "0")
            value = value[offset:]
            if length_text:
                length = int(length_text)
                value = value[:length]
        except ValueError:
            pass
    return value
