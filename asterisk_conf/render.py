"""Load the packaged templates (importlib.resources) and fill their `{{name}}` slots.

Templates use `{{name}}` rather than `string.Template`'s `$name` because Asterisk's own
`${VAR}` syntax fills the dialplan. A slot the caller does not fill, or a value the template
does not use, is a `TemplateError`: both are bugs in this package, never silently ignored.
A slot alone on its line that renders empty removes the line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources

from asterisk_conf.errors import TemplateError

_SLOT = re.compile(r"\{\{([a-z_]+)\}\}")
_PACKAGE = "asterisk_conf"


@cache
def load(name: str) -> str:
    """The text of `templates/<name>` shipped with the package."""
    try:
        return resources.files(_PACKAGE).joinpath("templates", name).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise TemplateError(f"template {name!r} is not packaged") from err


def render(name: str, values: Mapping[str, str]) -> str:
    """Fill every `{{slot}}` of template `name` from `values`."""
    text = load(name)
    slots = set(_SLOT.findall(text))
    missing = slots - values.keys()
    unused = values.keys() - slots
    if missing or unused:
        raise TemplateError(f"template {name}: missing {sorted(missing)}, unused {sorted(unused)}")
    lines = []
    for line in text.splitlines():
        whole = _SLOT.fullmatch(line)
        if whole and values[whole.group(1)] == "":
            continue
        lines.append(_SLOT.sub(lambda m: values[m.group(1)], line))
    return "\n".join(lines) + "\n"
