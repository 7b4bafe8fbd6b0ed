"""The simulator's event bus: every AMI event goes through here to the AMI sessions and taps."""

from __future__ import annotations

import logging
from collections.abc import Callable

Headers = list[tuple[str, str]]
Listener = Callable[[Headers], None]

_log = logging.getLogger(__name__)


class EventBus:
    """Synchronous fan-out: emit() calls every listener in order, so event order is preserved."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, headers: Headers) -> None:
        """Deliver one event to every listener."""
        for listener in list(self._listeners):
            listener(headers)
