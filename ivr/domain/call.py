"""What the IVR knows about a call when the session starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NewType

CallId = NewType("CallId", str)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """The call an IVR session runs for.

    ``caller_known`` and ``vip`` come from a customer lookup the adapter makes before the
    session starts; ``variables`` are initial flow variables (for example from AGI arguments).
    """

    call_id: CallId
    caller: str
    called: str = ""
    language: str = ""
    caller_known: bool = False
    vip: bool = False
    variables: Mapping[str, str] = field(default_factory=dict)
