"""Where IVR path events go: a Redis Stream for tickets and reports, or a list in tests.

Path events (``ivr.domain.path``) are serialised here and nowhere else: :func:`encode_path_event`
writes one JSON object with the event's class name under ``"type"`` and its fields (instants as
ISO 8601 with offset, enums by value, pairs as two-element lists); :func:`decode_path_event`
reads it back into the same frozen dataclass. :class:`RedisPathSink` appends each event to the
stream ``callcenter:events:ivr`` with ``XADD ... MAXLEN ~ <n>`` and the entry fields
``type``, ``call_id`` and ``json`` (the encoded event), so a consumer can filter without parsing.
A Redis failure never breaks a call: it is logged and counted in ``dropped``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import types
import typing
from dataclasses import fields
from datetime import datetime
from enum import Enum
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from ivr.domain import path as path_events
from ivr.domain.path import PathEvent
from ivr.errors import IvrError

__all__ = [
    "DEFAULT_MAXLEN",
    "IVR_EVENTS_STREAM",
    "InMemoryPathSink",
    "PathEventDecodeError",
    "RedisPathSink",
    "decode_path_event",
    "encode_path_event",
]

_log = logging.getLogger(__name__)

IVR_EVENTS_STREAM = "callcenter:events:ivr"
DEFAULT_MAXLEN = 100_000

_EVENT_CLASSES: dict[str, type[PathEvent]] = {
    cls.__name__: cls for cls in typing.get_args(PathEvent) if isinstance(cls, type)
}


class PathEventDecodeError(IvrError):
    """A stream entry is not a path event this version understands."""

    error_id = "ivr-path-event-decode"


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def encode_path_event(event: PathEvent) -> str:
    """One path event as a JSON object: ``{"type": "StepEntered", "call_id": ..., ...}``."""
    body: dict[str, object] = {"type": type(event).__name__}
    for f in fields(event):
        body[f.name] = _plain(getattr(event, f.name))
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _convert(hint: Any, value: Any, where: str) -> Any:
    supertype = getattr(hint, "__supertype__", None)  # NewType ids
    if supertype is not None:
        return _convert(supertype, value, where)
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in typing.get_args(hint):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list):
            raise PathEventDecodeError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, where) for item in value)
        return tuple(_convert(a, item, where) for a, item in zip(args, value, strict=True))
    if hint is datetime:
        if not isinstance(value, str):
            raise PathEventDecodeError(f"{where}: expected an ISO 8601 instant, got {value!r}")
        return datetime.fromisoformat(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, bool) and type(value) is hint:
        return value
    raise PathEventDecodeError(f"{where}: expected {hint}, got {value!r}")


def decode_path_event(text: str | bytes) -> PathEvent:
    """The event :func:`encode_path_event` wrote; PathEventDecodeError if it is not one."""
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise PathEventDecodeError(f"not JSON: {err}") from err
    if not isinstance(body, dict):
        raise PathEventDecodeError("a path event must be a JSON object")
    cls = _EVENT_CLASSES.get(str(body.get("type")))
    if cls is None:
        raise PathEventDecodeError(f"unknown path event type {body.get('type')!r}")
    hints = typing.get_type_hints(cls, vars(path_events))
    values: dict[str, Any] = {}
    try:
        for f in fields(cls):
            if f.name in body:
                values[f.name] = _convert(hints[f.name], body[f.name], f"{cls.__name__}.{f.name}")
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise PathEventDecodeError(f"{cls.__name__}: {err}") from err


class RedisPathSink:
    """Appends path events to a Redis Stream (``XADD <stream> MAXLEN ~ <maxlen> * ...``)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        stream: str = IVR_EVENTS_STREAM,
        maxlen: int = DEFAULT_MAXLEN,
        timeout: float = 2.0,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._maxlen = maxlen
        self._timeout = timeout
        self.dropped = 0

    @property
    def stream(self) -> str:
        return self._stream

    async def publish(self, event: PathEvent) -> None:
        entry: dict[FieldT, EncodableT] = {
            "type": type(event).__name__,
            "call_id": event.call_id,
            "json": encode_path_event(event),
        }
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.xadd(self._stream, entry, maxlen=self._maxlen, approximate=True)
        except (RedisError, OSError, TimeoutError) as err:
            self.dropped += 1
            _log.warning(
                "IVR path event %s for call %s not published to %s: %s",
                type(event).__name__,
                event.call_id,
                self._stream,
                err or type(err).__name__,
            )


class InMemoryPathSink:
    """Keeps path events in a list (tests and the demo without Redis)."""

    def __init__(self) -> None:
        self.events: list[PathEvent] = []
        self._changed = asyncio.Event()

    async def publish(self, event: PathEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def for_call(self, call_id: str) -> list[PathEvent]:
        return [e for e in self.events if e.call_id == call_id]

    async def wait_for(
        self, predicate: typing.Callable[[PathEvent], bool], timeout: float
    ) -> PathEvent:
        """The first event matching ``predicate``, waiting up to ``timeout`` seconds for it."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()
