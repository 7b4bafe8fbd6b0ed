"""Fill ``{name}`` placeholders in prompt texts and parameters from session variables."""

from __future__ import annotations

import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def render(template: str, variables: Mapping[str, str]) -> str:
    """``template`` with each ``{name}`` replaced by its value; unknown names become ``""``."""
    return _PLACEHOLDER.sub(lambda m: variables.get(m[1], ""), template)
