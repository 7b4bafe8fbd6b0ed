"""The ACD's shared state in Redis (agents, items, offers, events), changed only by Lua scripts.

Theory of operation
-------------------

* One site (tenant) is one hash tag: every key is ``acd:{<site>}:...``, so all keys a script
  touches are in one Redis Cluster slot. Each script declares the event stream and the hashes
  it is about in KEYS and derives the site's other keys from the prefix (same tag, same slot).
* Keys of a site (the full field list is in ``lua/acd_common.v3.lua``):

  - ``agent:<id>`` hash: ``ver`` (bumped by every change), the facts ``logged_in``, ``pause``
    (reason, empty when not paused), ``missed`` with ``missed_until`` (server ms the miss ends
    by itself; 0: until made ready), ``misses`` (consecutive) and ``missed_total``,
    ``wrap_until`` (an agent-wide wrap-up) and ``idle_since`` (server ms), ``wraps`` (the
    items' wrap-ups still running: JSON item id -> channel and end), ``caps`` (JSON capacity
    per channel), ``blocks`` (a call blocks the other channels), ``skills`` (JSON skill ->
    level), ``offer`` (the one pending offer id, or empty), ``load:<channel>`` (offered +
    assigned items; an item in wrap-up holds its slot through ``wraps`` instead), and
    ``state``, derived from the facts with the domain's precedence (logged_out, reserved,
    on_work, wrap_up, missed, paused, ready) and stored for people reading Redis;
  - ``ready:<channel>`` sorted sets: the agents that could take an item of the channel, scored
    by the time they can: ``max(idle_since, wrap_until, missed_until)`` and, for the item
    wrap-ups, the end of the one that frees a slot on the channel (and of a wrapping call's
    when calls block the other channels): ``ZRANGEBYSCORE -inf <now>`` is the ready agents,
    longest idle first, and agents in wrap-up or a timed miss appear by themselves when it ends
    (no timer, no controller that must stay alive);
  - ``item:<id>`` hash: ``ver``, ``state`` (waiting, offered, assigned, cancelled, completed),
    ``channel``, ``queue`` with ``queue_since`` (set when an overflow moved the item: it
    entered that queue then), ``priority``, ``enq`` (enqueue time, ms), ``score``, ``skills``
    (JSON skill -> minimum level), ``attrs`` (opaque JSON), ``agent``, ``offer``,
    ``offers``/``misses`` counters. Finished items expire after ``retention`` so repeats of
    cancel/complete are still answered meanwhile;
  - ``waiting`` sorted set, one fair order across all queues: score
    ``(1000 - priority) * 2**42 + enqueued_at_ms``, an exact integer in a double until 2109;
    higher priority first, then older first, then item id. A requeued item gets its original
    score back, i.e. it goes back ahead of everything that arrived after it;
  - ``offers`` hash (offer id -> JSON item, agent, channel, expiry) with the ``offer_expiry``
    sorted set as its expiry index; ``offer_seq`` numbers the offers;
  - ``events`` stream: every script XADDs the facts it changed (``type`` = past-tense name,
    ``at`` = server ms, then the fields), trimmed to about ``stream_maxlen`` entries.

* :meth:`AcdRedisState.reserve` is the compare-and-set that keeps two controllers from offering
  one agent beyond capacity or one item to two agents: in one script it checks the item is
  waiting, the agent can take the item's channel now and both versions are the expected ones,
  then marks both. An agent holds at most one pending offer. Skills are not checked there:
  eligibility (relaxed over the wait) is the routing engine's decision on the snapshot.
* Time is Redis's own clock (``TIME`` inside the scripts) for offer expiry, wrap-up and idle
  time; a controller's clock going backwards changes nothing. Only an explicitly given enqueue
  time (the domain's) comes from outside.
* Every script is idempotent, so a call whose reply was lost is simply retried. The version
  checks make a stale retry harmless (it is refused), and each reserve carries a request id, so
  its retry recognises the offer it made (``already=True``) while another controller asking for
  the same pair is refused; a repeated accept/reject/complete/cancel/logout answers
  ``already``. Scripts run with EVALSHA and are reloaded on NOSCRIPT (redis-py
  ``register_script``), so a flushed script cache or a restarted Redis costs one reload.
  Connection errors and timeouts are retried a few times with back-off, then raised as
  :class:`RedisStateUnavailable`.
* Semantics the service maps the domain onto: an agent holds at most one pending offer; a
  logout rescinds it at once (OfferRescinded, ItemRequeued) while assigned items stay with the
  agent until completed; a reject or no-answer requeues the item and marks the agent missed,
  counting consecutive misses (auto-pause after N is the caller's policy, from the count), for
  a cooldown given with the reject (``missed_until``, ended by Redis's clock alone); an
  expired offer (a controller died mid-offer) frees the agent *without* a miss; an accept after
  the expiry is refused and expires the offer itself, so the outcome never depends on when
  :meth:`AcdRedisState.expire_offers` runs; an item cancelled while offered frees its agent; an
  assigned item is completed, not cancelled. Wrap-up is per item, as in the domain: a completed
  item with a wrap-up keeps its slot on its channel until its own wrap-up ends, the agent
  stays offerable on the channels with capacity left, and a wrapping call blocks the other
  channels when calls block them (``complete``); making the agent ready ends its wrap-ups.
  The snapshot's loads count the wrapping items.
* Event names: AgentLoggedIn, AgentProfileChanged, AgentLoggedOut, AgentMadeReady, AgentPaused,
  AgentWrapUpStarted, AgentMarkedMissed, ItemEnqueued, ItemCancelled, ItemOverflowed (moved to
  another queue, keeping its place in the fair order), ItemOffered (the agent's
  reservation: one fact, one entry), ItemAssigned, OfferMissed, OfferTimedOut, OfferRescinded,
  ItemRequeued, ItemCompleted. Every entry that starts or ends an agent's hold on an item
  (ItemOffered, ItemRequeued, ItemCancelled, ItemCompleted) names the item, agent, offer and
  channel, so the holds can be replayed from the stream alone.
* Refusals are values (:class:`Refused` with a :class:`Refusal` reason), not exceptions: they are
  the normal outcome of a lost race.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from acd.adapters.redis_lease import _OUTAGE_ERRORS, _load_script
from acd.errors import AcdError

__all__ = [
    "CHANNELS",
    "COMMON_SCRIPT",
    "PRIORITY_LIMIT",
    "AcdEvent",
    "AcdRedisState",
    "AgentRecord",
    "AgentSpec",
    "Availability",
    "Changed",
    "ExpiredOffer",
    "ItemRecord",
    "ItemSpec",
    "Missed",
    "Offer",
    "PendingOffer",
    "ReadyAgent",
    "RedisStateError",
    "RedisStateUnavailable",
    "Refusal",
    "Refused",
    "Snapshot",
    "UnexpectedReply",
    "WaitingItem",
    "counts_field",
    "site_prefix",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: The channels an agent has a capacity for (the domain's ``Channel`` values).
CHANNELS: tuple[str, ...] = ("call", "chat", "email")
#: Priorities run from -PRIORITY_LIMIT to PRIORITY_LIMIT (the waiting-set score encoding).
PRIORITY_LIMIT = 1000
_MAX_LEVEL = 5
#: The shared prelude (v2: timed misses) and each script's version; a changed script gets a new
#: file ``acd_<name>.v<N>.lua`` so nodes of two releases never run different code under one name.
COMMON_SCRIPT = "acd_common.v3.lua"
_SCRIPTS: dict[str, int] = {
    "agent_login": 2,
    "agent_logout": 2,
    "agent_set_state": 3,
    "enqueue": 1,
    "cancel": 1,
    "reserve": 1,
    "accept": 1,
    "reject": 2,
    "complete": 2,
    "expire_offers": 1,
    "snapshot": 3,
    "overflow": 1,
}


class RedisStateError(AcdError):
    """Base of the ACD Redis state's errors."""

    error_id = "acd-redis-state"


class RedisStateUnavailable(RedisStateError):
    """Redis did not answer (connection lost or timed out) after the retries."""

    error_id = "acd-redis-state-unavailable"


class UnexpectedReply(RedisStateError):
    """A script answered something its contract does not allow (a bug or a foreign script)."""

    error_id = "acd-redis-state-unexpected-reply"


class Refusal(StrEnum):
    """Why a script changed nothing."""

    ITEM_UNKNOWN = "item_unknown"
    ITEM_NOT_WAITING = "item_not_waiting"
    ITEM_VERSION_MISMATCH = "item_version_mismatch"
    ITEM_ASSIGNED = "item_assigned"
    ITEM_NOT_ASSIGNED = "item_not_assigned"
    ITEM_FINISHED = "item_finished"
    ITEM_QUEUE_MISMATCH = "item_queue_mismatch"
    AGENT_UNKNOWN = "agent_unknown"
    AGENT_LOGGED_OUT = "agent_logged_out"
    AGENT_VERSION_MISMATCH = "agent_version_mismatch"
    AGENT_RESERVED = "agent_reserved"
    AGENT_PAUSED = "agent_paused"
    AGENT_MISSED = "agent_missed"
    AGENT_WRAP_UP = "agent_wrap_up"
    AGENT_NO_CHANNEL = "agent_no_channel"
    AGENT_AT_CAPACITY = "agent_at_capacity"
    AGENT_ON_CALL = "agent_on_call"
    OFFER_UNKNOWN = "offer_unknown"
    OFFER_EXPIRED = "offer_expired"
    OFFER_ENDED = "offer_ended"


class Availability(StrEnum):
    """What :meth:`AcdRedisState.set_state` can make a logged-in agent."""

    READY = "ready"
    PAUSED = "paused"
    WRAP_UP = "wrap_up"
    MISSED = "missed"


@dataclass(frozen=True, slots=True)
class Refused:
    """Nothing changed, for ``reason``; ``detail`` is the current state or version."""

    reason: Refusal
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Changed:
    """The change is done; ``version`` is the agent's or item's version after it.

    ``already`` means the same change had been made before (a repeat) and nothing changed now.
    """

    version: int
    already: bool = False


@dataclass(frozen=True, slots=True)
class Offer:
    """A reservation made by :meth:`AcdRedisState.reserve`."""

    offer_id: str
    item_id: str
    agent_id: str
    expires_at_ms: int
    item_version: int
    agent_version: int
    already: bool = False


@dataclass(frozen=True, slots=True)
class Missed:
    """A rejected or unanswered offer: the item is back in the queue, the agent marked missed."""

    item_version: int
    consecutive_misses: int
    already: bool = False


@dataclass(frozen=True, slots=True)
class ExpiredOffer:
    """An offer ended by :meth:`AcdRedisState.expire_offers`."""

    offer_id: str
    item_id: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class PendingOffer:
    """An offer not yet accepted, rejected or expired, as the offers hash holds it."""

    offer_id: str
    item_id: str
    agent_id: str
    channel: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """What a login tells Redis about an agent."""

    agent_id: str
    capacity: Mapping[str, int] = field(default_factory=lambda: {"call": 1})
    skills: Mapping[str, int] = field(default_factory=dict)
    call_blocks_others: bool = True
    pause_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """A new work item; ``enqueued_at_ms`` None means the Redis server's time now."""

    item_id: str
    channel: str
    queue: str
    priority: int = 0
    skills: Mapping[str, int] = field(default_factory=dict)
    enqueued_at_ms: int | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WaitingItem:
    """A waiting item as the snapshot shows it."""

    item_id: str
    version: int
    channel: str
    queue: str
    priority: int
    enqueued_at_ms: int
    skills: Mapping[str, int]
    misses: int
    queue_since_ms: int = 0  # when it entered its current queue (an overflow), else enqueue time


@dataclass(frozen=True, slots=True)
class ReadyAgent:
    """An agent that can take an item of at least one channel now, as the snapshot shows it."""

    agent_id: str
    version: int
    capacity: Mapping[str, int]
    load: Mapping[str, int]
    call_blocks_others: bool
    skills: Mapping[str, int]
    idle_since_ms: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent read: waiting items in the fair order, ready agents longest idle first."""

    server_ms: int
    waiting_total: int
    waiting: tuple[WaitingItem, ...]
    ready: Mapping[str, tuple[str, ...]]
    agents: Mapping[str, ReadyAgent]


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """An agent's hash, read at ``server_ms``; ``state`` is derived at that time."""

    agent_id: str
    version: int
    state: str
    logged_in: bool
    pause_reason: str | None
    missed: bool
    missed_until_ms: int
    consecutive_misses: int
    missed_total: int
    #: The end of the latest wrap-up running (the agent-wide one or an item's), server ms.
    wrap_until_ms: int
    idle_since_ms: int
    capacity: Mapping[str, int]
    load: Mapping[str, int]
    call_blocks_others: bool
    skills: Mapping[str, int]
    offer_id: str | None
    server_ms: int
    #: The items' wrap-ups running at ``server_ms``: item id -> (channel, end in server ms); each
    #: holds its slot on the channel (``load`` counts only offered and assigned items).
    wraps: Mapping[str, tuple[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """A work item's hash."""

    item_id: str
    version: int
    state: str
    channel: str
    queue: str
    priority: int
    enqueued_at_ms: int
    skills: Mapping[str, int]
    attrs: Mapping[str, Any]
    agent_id: str | None
    offer_id: str | None
    offers: int
    misses: int


@dataclass(frozen=True, slots=True)
class AcdEvent:
    """One entry of the event stream: a past-tense fact with its fields."""

    event_id: str
    kind: str
    at_ms: int
    fields: Mapping[str, str]


def site_prefix(site: str) -> str:
    """The key prefix of a site; ``{site}`` is the Redis Cluster hash tag."""
    if not site or any(c in site for c in "{}"):
        raise ValueError(f"bad site name {site!r}")
    return f"acd:{{{site}}}:"


@functools.cache
def _script_source(name: str) -> str:
    return _load_script(COMMON_SCRIPT) + "\n" + _load_script(f"acd_{name}.v{_SCRIPTS[name]}.lua")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return str(value)


def _int(value: Any) -> int:
    text = _text(value)
    return int(float(text)) if text else 0


def _json_text(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"))


def _int_map(value: Any) -> dict[str, int]:
    text = _text(value)
    if not text:
        return {}
    decoded = json.loads(text)
    if not isinstance(decoded, dict):  # cjson writes an empty object as {} too; lists are bugs
        return {}
    return {str(k): int(v) for k, v in decoded.items()}


def counts_field(text: str) -> dict[str, int] | None:
    """A JSON ``{channel: count}`` field of an event (``caps``); None if absent or malformed."""
    try:
        return _int_map(text) if text else None
    except (ValueError, TypeError, AttributeError):
        return None


def _check_id(kind: str, value: str) -> None:
    if not value:
        raise ValueError(f"{kind} id must not be empty")


def _check_levels(skills: Mapping[str, int]) -> None:
    for skill, level in skills.items():
        if not skill or not 1 <= level <= _MAX_LEVEL:
            raise ValueError(f"skill {skill!r} level {level} outside 1..{_MAX_LEVEL}")


def _ms(seconds: float) -> int:
    if seconds < 0:
        raise ValueError(f"a duration must not be negative, got {seconds}")
    return round(seconds * 1000)


def _missed_at(f: Mapping[str, str], now_ms: int) -> bool:
    """Whether the agent is missed at ``now_ms`` (a timed miss ends at ``missed_until``)."""
    if f.get("missed") != "1":
        return False
    until = _int(f.get("missed_until"))
    return until == 0 or until > now_ms


def _wraps(text: str | None, now_ms: int) -> dict[str, tuple[str, int]]:
    """The ``wraps`` field (JSON item id -> {c: channel, u: end ms}), those running at now_ms."""
    if not text:
        return {}
    decoded = json.loads(text)
    if not isinstance(decoded, dict):  # cjson writes an empty table as {} too
        return {}
    out = {}
    for item_id, wrap in decoded.items():
        end = int(float(wrap.get("u", 0)))
        if end > now_ms:
            out[str(item_id)] = (str(wrap.get("c", "")), end)
    return out


def _derive_state(f: Mapping[str, str], now_ms: int) -> str:
    """The agent's state from its facts, with the precedence of the scripts and the domain."""
    if f.get("logged_in") != "1":
        return "logged_out"
    if f.get("offer"):
        return "reserved"
    if any(_int(f.get(f"load:{ch}")) > 0 for ch in CHANNELS):
        return "on_work"
    if _int(f.get("wrap_until")) > now_ms or _wraps(f.get("wraps"), now_ms):
        return "wrap_up"
    if _missed_at(f, now_ms):
        return "missed"
    if f.get("pause"):
        return "paused"
    return "ready"


class AcdRedisState:
    """The ACD state of one site in Redis, changed only through the ``acd_*`` Lua scripts."""

    def __init__(
        self,
        redis: aioredis.Redis,
        site: str,
        *,
        stream_maxlen: int = 100_000,
        retention: float = 3600.0,
        call_timeout: float = 2.0,
        attempts: int = 3,
        retry_delay: float = 0.05,
    ) -> None:
        if stream_maxlen <= 0 or retention <= 0 or call_timeout <= 0 or attempts < 1:
            raise ValueError("stream_maxlen, retention, call_timeout and attempts must be positive")
        self._redis = redis
        self.site = site
        self.prefix = site_prefix(site)
        self._common = [self.prefix, str(stream_maxlen), str(_ms(retention))]
        self._call_timeout = call_timeout
        self._attempts = attempts
        self._retry_delay = retry_delay
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(_script_source(name)) for name in _SCRIPTS
        }
        self.events_key = self.prefix + "events"
        self.waiting_key = self.prefix + "waiting"
        self.offers_key = self.prefix + "offers"
        self.offer_expiry_key = self.prefix + "offer_expiry"

    # --- keys -------------------------------------------------------------------------------

    def agent_key(self, agent_id: str) -> str:
        """The hash of one agent."""
        return f"{self.prefix}agent:{agent_id}"

    def item_key(self, item_id: str) -> str:
        """The hash of one work item."""
        return f"{self.prefix}item:{item_id}"

    def ready_key(self, channel: str) -> str:
        """The sorted set of the agents that can take an item of ``channel``."""
        return f"{self.prefix}ready:{channel}"

    # --- agents -----------------------------------------------------------------------------

    async def agent_login(self, agent: AgentSpec) -> Changed:
        """Log the agent in (AgentLoggedIn), or replace a logged-in agent's profile."""
        reply = await self._run("agent_login", [self.agent_key(agent.agent_id)], _login_args(agent))
        outcome = _changed(reply)
        if isinstance(outcome, Refused):
            raise UnexpectedReply(f"agent_login refused: {outcome}")
        return outcome

    async def login_many(self, agents: Iterable[AgentSpec], *, batch: int = 1000) -> int:
        """Log many agents in through pipelines of ``batch`` scripts; how many were logged in."""
        return await self._pipelined(
            "agent_login", ((self.agent_key(a.agent_id), _login_args(a)) for a in agents), batch
        )

    async def agent_logout(self, agent_id: str) -> Changed | Refused:
        """Log out; a pending offer is rescinded and its item requeued at its old place."""
        return _changed(await self._run("agent_logout", [self.agent_key(agent_id)], [agent_id]))

    async def set_state(
        self,
        agent_id: str,
        state: Availability,
        *,
        reason: str = "",
        wrap_up: float = 0.0,
        expected_version: int | None = None,
    ) -> Changed | Refused:
        """Make a logged-in agent ready, paused (``reason``), in wrap-up for ``wrap_up`` seconds
        (server clock), or missed."""
        if state is Availability.PAUSED and not reason:
            raise ValueError("a pause needs a reason")
        args = [
            agent_id,
            state.value,
            reason if state is Availability.PAUSED else "",
            str(_ms(wrap_up)),
            "" if expected_version is None else str(expected_version),
        ]
        return _changed(await self._run("agent_set_state", [self.agent_key(agent_id)], args))

    # --- items ------------------------------------------------------------------------------

    async def enqueue(self, item: ItemSpec) -> Changed | Refused:
        """Put a new item in the waiting set (ItemEnqueued); a live item of that id is
        ``already``, a finished one is refused with ``item_finished``."""
        return _changed(await self._run("enqueue", [self.item_key(item.item_id)], _item_args(item)))

    async def enqueue_many(self, items: Iterable[ItemSpec], *, batch: int = 1000) -> int:
        """Enqueue many items through pipelines of ``batch`` scripts; how many were enqueued."""
        return await self._pipelined(
            "enqueue", ((self.item_key(i.item_id), _item_args(i)) for i in items), batch
        )

    async def cancel(self, item_id: str, reason: str = "cancelled") -> Changed | Refused:
        """Cancel a waiting or offered item (an offered one frees its agent, without a miss)."""
        return _changed(await self._run("cancel", [self.item_key(item_id)], [item_id, reason]))

    # --- offers -----------------------------------------------------------------------------

    async def reserve(
        self,
        item_id: str,
        agent_id: str,
        *,
        item_version: int | None,
        agent_version: int | None,
        offer_ttl: float,
        request_id: str | None = None,
    ) -> Offer | Refused:
        """Offer the item to the agent if both are still as the caller saw them (None: any
        version); the offer expires ``offer_ttl`` seconds later on the Redis server's clock.

        ``request_id`` (default: a fresh random one) identifies this decision: a call retried
        with it after a lost reply gets the offer it made back, with ``already=True``.
        """
        _check_id("item", item_id)
        _check_id("agent", agent_id)
        if offer_ttl <= 0:
            raise ValueError(f"offer_ttl must be positive, got {offer_ttl}")
        args = [
            item_id,
            agent_id,
            "" if item_version is None else str(item_version),
            "" if agent_version is None else str(agent_version),
            str(_ms(offer_ttl)),
            request_id or uuid.uuid4().hex,
        ]
        reply = await self._run("reserve", [self.item_key(item_id), self.agent_key(agent_id)], args)
        code = _text(reply[0])
        if code in ("ok", "already"):
            return Offer(
                offer_id=_text(reply[1]),
                item_id=item_id,
                agent_id=agent_id,
                expires_at_ms=_int(reply[2]),
                item_version=_int(reply[3]),
                agent_version=_int(reply[4]),
                already=code == "already",
            )
        refused = _refused(reply)
        log.debug("reserve %s for %s refused: %s", item_id, agent_id, refused.reason)
        return refused

    async def accept(self, item_id: str, offer_id: str) -> Changed | Refused:
        """The agent took the offer: the item is assigned (ItemAssigned), the agent on work."""
        return _changed(await self._run("accept", [self.item_key(item_id)], [item_id, offer_id]))

    async def reject(
        self,
        item_id: str,
        offer_id: str,
        *,
        no_answer: bool = False,
        missed_for: float | None = None,
    ) -> Missed | Refused:
        """The agent refused (or did not answer) the offer: the item goes back to its old place,
        the agent is marked missed and its misses counted.

        ``missed_for`` seconds (server clock) later the miss ends by itself; None: the agent
        stays missed until made ready.
        """
        cause = "no_answer" if no_answer else "rejected"
        cooldown = "" if missed_for is None else str(_ms(missed_for))
        reply = await self._run(
            "reject", [self.item_key(item_id)], [item_id, offer_id, cause, cooldown]
        )
        code = _text(reply[0])
        if code in ("ok", "already"):
            return Missed(_int(reply[1]), _int(reply[2]), already=code == "already")
        return _refused(reply)

    async def overflow(
        self, item_id: str, from_queue: str, to_queue: str, reason: str = "overflow"
    ) -> Changed | Refused:
        """Move a waiting item from ``from_queue`` to ``to_queue`` (ItemOverflowed), keeping its
        place in the fair order; ``already`` when it is in ``to_queue`` already."""
        _check_id("item", item_id)
        if not from_queue or not to_queue or from_queue == to_queue:
            raise ValueError(f"item {item_id!r}: bad overflow {from_queue!r} -> {to_queue!r}")
        args = [item_id, from_queue, to_queue, reason]
        return _changed(await self._run("overflow", [self.item_key(item_id)], args))

    async def complete(self, item_id: str, *, wrap_up: float = 0.0) -> Changed | Refused:
        """The agent finished the item; no new offer for ``wrap_up`` seconds (server clock)."""
        args = [item_id, str(_ms(wrap_up))]
        return _changed(await self._run("complete", [self.item_key(item_id)], args))

    async def expire_offers(self, limit: int = 100) -> list[ExpiredOffer]:
        """End up to ``limit`` offers past their expiry on the Redis server's clock: agents
        freed, items requeued at their old place."""
        reply = await self._run("expire_offers", [self.offer_expiry_key], [str(limit)])
        return [ExpiredOffer(_text(o), _text(i), _text(a)) for o, i, a in reply]

    # --- reads ------------------------------------------------------------------------------

    async def snapshot(self, max_items: int = 1000, max_agents: int = 1000) -> Snapshot:
        """The first ``max_items`` waiting items in the fair order and up to ``max_agents`` ready
        agents per channel, longest idle first, read atomically."""
        if max_items < 0 or max_agents < 0:
            raise ValueError("snapshot limits must not be negative")
        reply = await self._run("snapshot", [self.waiting_key], [str(max_items), str(max_agents)])
        now, total, raw_items, raw_ready, raw_agents = reply
        waiting = tuple(
            WaitingItem(
                item_id=_text(r[0]),
                version=_int(r[1]),
                channel=_text(r[2]),
                queue=_text(r[3]),
                priority=_int(r[4]),
                enqueued_at_ms=_int(r[5]),
                skills=_int_map(r[6]),
                misses=_int(r[7]),
                queue_since_ms=_int(r[8]) if len(r) > 8 and _text(r[8]) else _int(r[5]),
            )
            for r in raw_items
        )
        ready = {_text(ch): tuple(_text(a) for a in ids) for ch, ids in raw_ready}
        agents = {}
        for r in raw_agents:
            agent_id = _text(r[0])
            agents[agent_id] = ReadyAgent(
                agent_id=agent_id,
                version=_int(r[1]),
                capacity=_int_map(r[2]),
                call_blocks_others=_text(r[3]) == "1",
                skills=_int_map(r[4]),
                idle_since_ms=_int(r[5]),
                load={ch: _int(v) for ch, v in zip(CHANNELS, r[6:9], strict=True)},
            )
        return Snapshot(_int(now), _int(total), waiting, ready, agents)

    async def agent(self, agent_id: str) -> AgentRecord | None:
        """The agent's hash with its state derived at the server's time now, or None."""
        raw, now_ms = await self._read_hash(self.agent_key(agent_id))
        if not raw:
            return None
        f = {_text(k): _text(v) for k, v in raw.items()}
        wraps = _wraps(f.get("wraps"), now_ms)
        return AgentRecord(
            agent_id=agent_id,
            version=_int(f.get("ver")),
            state=_derive_state(f, now_ms),
            logged_in=f.get("logged_in") == "1",
            pause_reason=f.get("pause") or None,
            missed=_missed_at(f, now_ms),
            missed_until_ms=_int(f.get("missed_until")) if f.get("missed") == "1" else 0,
            consecutive_misses=_int(f.get("misses")),
            missed_total=_int(f.get("missed_total")),
            wrap_until_ms=max([_int(f.get("wrap_until")), *(end for _, end in wraps.values())]),
            idle_since_ms=_int(f.get("idle_since")),
            capacity=_int_map(f.get("caps")),
            load={ch: _int(f.get(f"load:{ch}")) for ch in CHANNELS},
            call_blocks_others=f.get("blocks") == "1",
            skills=_int_map(f.get("skills")),
            offer_id=f.get("offer") or None,
            server_ms=now_ms,
            wraps=wraps,
        )

    async def item(self, item_id: str) -> ItemRecord | None:
        """The item's hash, or None (never enqueued, or finished longer than retention ago)."""
        raw, _ = await self._read_hash(self.item_key(item_id))
        if not raw:
            return None
        f = {_text(k): _text(v) for k, v in raw.items()}
        attrs = json.loads(f["attrs"]) if f.get("attrs") else {}
        return ItemRecord(
            item_id=item_id,
            version=_int(f.get("ver")),
            state=f.get("state", ""),
            channel=f.get("channel", ""),
            queue=f.get("queue", ""),
            priority=_int(f.get("priority")),
            enqueued_at_ms=_int(f.get("enq")),
            skills=_int_map(f.get("skills")),
            attrs=attrs if isinstance(attrs, dict) else {},
            agent_id=f.get("agent") or None,
            offer_id=f.get("offer") or None,
            offers=_int(f.get("offers")),
            misses=_int(f.get("misses")),
        )

    async def pending_offers(self) -> dict[str, PendingOffer]:
        """Every pending offer by offer id."""
        raw = await self._with_retry(lambda: self._redis.hgetall(self.offers_key))
        out = {}
        for key, value in (raw or {}).items():
            offer_id, o = _text(key), json.loads(_text(value))
            out[offer_id] = PendingOffer(
                offer_id, str(o["item"]), str(o["agent"]), str(o["channel"]), int(o["expires"])
            )
        return out

    async def next_ready_ms(self, after_ms: int) -> int | None:
        """The earliest time after ``after_ms`` at which an agent becomes ready by itself (its
        wrap-up or missed cooldown ends: a ready-set score in the future), or None. Read-only;
        such a change writes no event, so a controller that waits for events must wake then."""

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel in CHANNELS:
                    pipe.zrangebyscore(
                        self.prefix + "ready:" + channel,
                        f"({after_ms}",
                        "+inf",
                        start=0,
                        num=1,
                        withscores=True,
                    )
                return list(await pipe.execute())

        replies = await self._with_retry(read)
        scores = [int(score) for reply in replies or [] for _, score in reply]
        return min(scores) if scores else None

    async def events(self, after: str = "0-0", count: int = 1000) -> list[AcdEvent]:
        """Up to ``count`` events of the stream with ids greater than ``after``."""
        entries = await self._with_retry(
            lambda: self._redis.xrange(self.events_key, min=f"({after}", count=count)
        )
        out = []
        for event_id, raw in entries or []:
            f = {_text(k): _text(v) for k, v in (raw or {}).items()}
            kind = f.pop("type", "")
            at = _int(f.pop("at", "0"))
            out.append(AcdEvent(_text(event_id), kind, at, f))
        return out

    async def all_events(self, batch: int = 5000) -> list[AcdEvent]:
        """Every event still in the stream, oldest first."""
        out: list[AcdEvent] = []
        after = "0-0"
        while chunk := await self.events(after, batch):
            out.extend(chunk)
            after = chunk[-1].event_id
        return out

    # --- plumbing ---------------------------------------------------------------------------

    async def _read_hash(self, key: str) -> tuple[dict[Any, Any], int]:
        async def read() -> tuple[dict[Any, Any], int]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(key)
                pipe.time()
                raw, (seconds, micros) = await pipe.execute()
            return dict(raw), int(seconds) * 1000 + int(micros) // 1000

        return await self._with_retry(read)

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        return await self.run_prelude_script(self._scripts[name], keys, args)

    async def run_prelude_script(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str]
    ) -> Any:
        """Run a script written on ``acd_common.v3.lua`` (KEYS[1] = this site's stream, then
        ``keys``; the common ARGV, then ``args``), with the retries of every other call."""
        all_keys = [self.events_key, *keys]
        all_args = [*self._common, *args]
        return await self._with_retry(lambda: script(keys=all_keys, args=all_args))

    async def _with_retry(self, call: Callable[[], Awaitable[_T]]) -> _T:
        # Safe because every script is idempotent (see the module docstring) and reads are reads.
        for attempt in range(1, self._attempts + 1):
            try:
                return await asyncio.wait_for(call(), self._call_timeout)
            except _OUTAGE_ERRORS as err:
                if attempt == self._attempts:
                    raise RedisStateUnavailable(
                        f"Redis did not answer after {attempt} attempts: {err!r}"
                    ) from err
                log.warning("ACD state: Redis call failed (attempt %d), retrying: %r", attempt, err)
                await asyncio.sleep(self._retry_delay * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pipelined(
        self, name: str, calls: Iterable[tuple[str, list[str]]], batch: int
    ) -> int:
        script = self._scripts[name]
        done = 0
        pending: list[tuple[str, list[str]]] = []

        async def flush() -> int:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, args in pending:
                    await script(
                        keys=[self.events_key, key], args=[*self._common, *args], client=pipe
                    )
                replies = await pipe.execute()
            pending.clear()
            return sum(1 for r in replies if _text(r[0]) == "ok")

        for entry in calls:
            pending.append(entry)
            if len(pending) >= batch:
                done += await flush()
        if pending:
            done += await flush()
        return done


def _login_args(agent: AgentSpec) -> list[str]:
    _check_id("agent", agent.agent_id)
    for channel, cap in agent.capacity.items():
        if channel not in CHANNELS or cap < 0:
            raise ValueError(f"agent {agent.agent_id!r}: bad capacity {channel!r}={cap}")
    _check_levels(agent.skills)
    if agent.pause_reason == "":
        raise ValueError("a pause reason must not be empty (None means ready)")
    return [
        agent.agent_id,
        _json_text(agent.capacity),
        "1" if agent.call_blocks_others else "0",
        _json_text(agent.skills),
        agent.pause_reason or "",
    ]


def _item_args(item: ItemSpec) -> list[str]:
    _check_id("item", item.item_id)
    if item.channel not in CHANNELS:
        raise ValueError(f"item {item.item_id!r}: unknown channel {item.channel!r}")
    if not item.queue:
        raise ValueError(f"item {item.item_id!r}: empty queue")
    if not -PRIORITY_LIMIT <= item.priority <= PRIORITY_LIMIT:
        raise ValueError(f"item {item.item_id!r}: priority {item.priority} outside +-1000")
    if item.enqueued_at_ms is not None and not 0 <= item.enqueued_at_ms < 2**42:
        raise ValueError(
            f"item {item.item_id!r}: enqueued_at_ms {item.enqueued_at_ms} out of range"
        )
    _check_levels(item.skills)
    return [
        item.item_id,
        item.channel,
        item.queue,
        str(item.priority),
        "" if item.enqueued_at_ms is None else str(item.enqueued_at_ms),
        _json_text(item.skills),
        _json_text(item.attrs),
    ]


def _refused(reply: Sequence[Any]) -> Refused:
    code = _text(reply[0])
    try:
        reason = Refusal(code)
    except ValueError as err:
        raise UnexpectedReply(f"unknown script reply {code!r}") from err
    return Refused(reason, _text(reply[1]) if len(reply) > 1 else "")


def _changed(reply: Sequence[Any]) -> Changed | Refused:
    code = _text(reply[0])
    if code in ("ok", "already"):
        return Changed(_int(reply[1]), already=code == "already")
    return _refused(reply)
