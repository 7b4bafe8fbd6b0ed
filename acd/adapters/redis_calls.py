"""Call facts on the ACD events stream and the abandon-resume memo, through versioned Lua scripts.

The facts share the stream and conventions of :mod:`acd.adapters.redis_state` (``type``, ``at`` =
server ms, then fields); the ACD service writes them, queue statistics read them. Names and
fields (all values are strings; times in ms):

the dataclasses of :mod:`acd.domain.call_events` (CallQueued, CallOffered, CallAnswered,
CallAbandoned, CallCompleted, CallbackRequested, ...), serialised by its ``encode_call_event``.

Caller numbers never reach the stream or a key: the resume memo is keyed by a SHA-256 of the
number and the queue (``acd:{<site>}:resume:<queue>:<hash>``) and expires after the window.
"""

from __future__ import annotations

import functools
import hashlib

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from acd.adapters.redis_lease import _load_script
from acd.adapters.redis_state import COMMON_SCRIPT, AcdRedisState
from acd.domain.call_events import CallEvent, encode_call_event

__all__ = ["CallFacts"]


@functools.cache
def _source(name: str) -> str:
    return _load_script(COMMON_SCRIPT) + "\n" + _load_script(name)


class CallFacts:
    """Writes call facts and resume memos of one site (the same Redis and prefix as ``state``)."""

    def __init__(self, redis: aioredis.Redis, state: AcdRedisState) -> None:
        self._state = state
        self._fact: AsyncScript = redis.register_script(_source("acd_call_fact.v1.lua"))
        self._take: AsyncScript = redis.register_script(_source("acd_resume_take.v1.lua"))

    @staticmethod
    def memo_suffix(queue: str, caller: str) -> str:
        """The memo key after the site prefix; the number itself is never stored."""
        digest = hashlib.sha256(f"{queue}\0{caller}".encode()).hexdigest()[:32]
        return f"resume:{queue}:{digest}"

    async def emit(self, event: CallEvent, *, memo: tuple[str, int, float] | None = None) -> str:
        """Append the fact; ``memo`` = (suffix, enqueue ms, ttl s) also keeps a resume memo."""
        kind, fields = encode_call_event(event)
        flat: list[str] = []
        for key, value in fields.items():
            flat += [key, value]
        suffix, enq_ms, ttl = memo if memo is not None else ("", 0, 0.0)
        args = [kind, suffix, str(enq_ms), str(round(ttl * 1000)), *flat]
        reply = await self._state.run_prelude_script(self._fact, [], args)
        return _text(reply[1])

    async def take_memo(self, suffix: str) -> int | None:
        """The enqueue time (ms) a returning caller resumes with, or None; the memo is used up."""
        reply = await self._state.run_prelude_script(self._take, [], [suffix])
        return int(_text(reply[1])) if _text(reply[0]) == "ok" else None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
