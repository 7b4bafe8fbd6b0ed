"""Channel-independent dialplan functions: FIELDQTY, CUT, LEN, ISNULL, EXISTS, LOCAL.

Behaviour from Asterisk 22's func_strings.c, func_cut.c and app_stack.c (the subset our
generated dialplan uses): FIELDQTY(var,delim) and CUT(var,delim,fields) take a variable
*name*; FIELDQTY of an empty variable is 0; CUT's field spec is 1-based, ``N``, ``N-M``,
``N-``, ``-M`` or several of those joined by ``&``, and the fields come back joined by the
delimiter. LOCAL(name) reads like the plain variable (Set writes it through the Gosub frame).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["evaluate"]

Variable = Callable[[str], str | None]


def _args(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def _delimiter(text: str) -> str:
    # ast_get_encoded_char: an empty delimiter means ","; "\," style escapes are not modelled.
    if not text:
        return ","
    if len(text) == 2 and text[0] == "\\":
        return text[1]
    return text[0]


def _fieldqty(args: str, variable: Variable) -> str:
    parts = _args(args)
    value = variable(parts[0]) or ""
    delim = _delimiter(parts[1] if len(parts) > 1 else "")
    return str(len(value.split(delim))) if value else "0"


def _cut_indexes(spec: str, count: int) -> list[int]:
    indexes: list[int] = []
    for item in spec.split("&"):
        item = item.strip()
        if not item:
            continue
        first, dash, last = item.partition("-")
        try:
            start = int(first) if first else 1
            end = (int(last) if last else count) if dash else start
        except ValueError:
            continue
        indexes.extend(range(max(start, 1), min(end, count) + 1))
    return indexes


def _cut(args: str, variable: Variable) -> str:
    parts = _args(args)
    if len(parts) < 3:
        return ""
    value = variable(parts[0]) or ""
    delim = _delimiter(parts[1])
    fields = value.split(delim)
    return delim.join(fields[i - 1] for i in _cut_indexes(parts[2], len(fields)))


def evaluate(name: str, args: str, variable: Variable) -> str | None:
    """The value of function `name` (upper case) called with `args`; None if not modelled here."""
    if name == "FIELDQTY":
        return _fieldqty(args, variable)
    if name == "CUT":
        return _cut(args, variable)
    if name == "LEN":
        return str(len(args))
    if name == "ISNULL":
        return "1" if not args else "0"
    if name == "EXISTS":
        return "1" if args else "0"
    if name == "LOCAL":
        return variable(args.strip()) or ""
    return None
