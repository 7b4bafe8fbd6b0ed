"""Chats left in the ACD by a node that died: each node's presence in Redis, and the sweeper.

Theory of operation
-------------------

A chat lives in the web app of one node process (its sockets, its routing task); the ACD item
``chat-<chat id>`` lives in Redis. A clean stop ends the chats (the web app's cleanup), but a
node that is killed leaves its items: waiting ones until their queue's maximum wait, answered
ones holding the agent's chat capacity for ever. So:

* :class:`ChatOwners` records, per site, which node process serves each chat item (the hash
  ``chat:{<site>}:owners``, item id -> owner) before the item is queued, and forgets it when the
  chat ends. The owner is ``<node id>/<random incarnation>``: a node restarted under the same id
  is a new owner, so the chats of the process that died are not taken for its own. Each owner
  proves it is alive with ``chat:{<site>}:node:<owner>``, refreshed every sweep with a TTL of
  ``ttl`` seconds (several sweep intervals: a busy loop or a Redis hiccup is not a death).
* :class:`ChatSweeper` (every node runs one; every step is idempotent, so two sweeping at once
  is harmless) refreshes its own presence, then, every ``interval``: for each live chat item
  in the ACD (a ``SCAN`` of the item keys, so items queued before a restart are seen), ends the
  item when its chat session is ended (or gone) in the records, or when its owner's presence
  has expired; in that second case the chat session is ended in the records first (actor
  ``system:acd``, as in ``chat.ended``), so a crash between the two steps leaves a chat that the
  next sweep ends by the first rule. Ending an item is :func:`end_item`: a waiting or offered
  item is cancelled (reason ``cancelled``: the customer did not leave, the node did), an
  answered one completed, which frees the agent's capacity and starts the queue's wrap-up.
  Owner entries of finished items are removed.

An item without an owner entry (queued by a node that does not record owners) is ended by the
records rule only. If Redis is unreachable for longer than ``ttl`` every presence lapses; the
first sweeps after it may end chats of live nodes. That is the price of not trusting memory,
and ``ttl`` is what bounds it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable

import redis.asyncio as aioredis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from acd.adapters.item_scan import FINISHED, live_items
from acd.adapters.passes import run_passes
from acd.domain.call_events import LeaveReason
from acd.service import AcdService
from tickets.chat import ChatRecords, ChatSession, ChatStatus

__all__ = ["ITEM_PREFIX", "ChatOwners", "ChatSweeper", "chat_of", "end_item"]

log = logging.getLogger(__name__)

ITEM_PREFIX = "chat-"
ACTOR = "system:acd"
SQL_BATCH = 500


def chat_of(item_id: str) -> int | None:
    """The chat id in a chat item id, or None for another item."""
    number = item_id[len(ITEM_PREFIX) :] if item_id.startswith(ITEM_PREFIX) else ""
    return int(number) if number.isdigit() else None


async def end_item(acd: AcdService, item_id: str, reason: LeaveReason) -> None:
    """End the chat's item whatever became of it: cancelled (``reason``) while it waits or is
    offered, completed once answered; nothing for a finished or unknown item."""
    record = await acd.state.item(item_id)
    if record is None or record.state in FINISHED:
        return
    if record.state == "assigned":
        await acd.hung_up(item_id)
    else:
        await acd.cancel(item_id, reason.value)


class ChatOwners:
    """Which node process serves each chat item, and which of them are alive (see above)."""

    def __init__(
        self, redis: aioredis.Redis, site: str, node_id: str, *, ttl: float = 30.0
    ) -> None:
        if ttl <= 0 or not node_id:
            raise ValueError("ttl must be positive and node_id not empty")
        self.redis = redis
        self.ttl = ttl
        self.owner = f"{node_id}/{secrets.token_hex(4)}"
        self._prefix = f"chat:{{{site}}}:"

    @property
    def owners_key(self) -> str:
        return f"{self._prefix}owners"

    def presence_key(self, owner: str) -> str:
        return f"{self._prefix}node:{owner}"

    async def beat(self) -> None:
        """This process is alive for ``ttl`` more seconds."""
        await self.redis.set(self.presence_key(self.owner), "1", px=round(self.ttl * 1000))

    async def claim(self, item_id: str) -> None:
        """The item is served here (written before it is queued)."""
        await self.redis.hset(self.owners_key, item_id, self.owner)

    async def release(self, item_id: str) -> None:
        await self.redis.hdel(self.owners_key, item_id)

    async def all(self) -> dict[str, str]:
        """Item id -> owner, for every chat item recorded."""
        raw = await self.redis.hgetall(self.owners_key)
        return {_text(k): _text(v) for k, v in raw.items()}

    async def alive(self, owners: Iterable[str]) -> set[str]:
        """The owners among ``owners`` whose presence has not expired."""
        wanted = sorted(set(owners))
        if not wanted:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for owner in wanted:
                pipe.exists(self.presence_key(owner))
            found = await pipe.execute()
        return {owner for owner, n in zip(wanted, found, strict=True) if n}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ChatSweeper:
    """See the module docstring; :meth:`run` under the node's TaskGroup."""

    def __init__(
        self,
        acd: AcdService,
        sessions: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        owners: ChatOwners,
        *,
        interval: float = 5.0,
    ) -> None:
        if interval <= 0 or owners.ttl <= interval:
            raise ValueError("interval must be positive and shorter than the presence ttl")
        self.acd = acd
        self.sessions = sessions
        self.redis = redis
        self.owners = owners
        self.interval = interval
        self.passes = 0
        self.ended = 0  # items this sweeper ended

    async def run(self) -> None:
        """Beat and sweep every ``interval`` until cancelled; outages are logged and retried."""
        await self.acd.started.wait()
        await run_passes(
            self._beat_and_sweep,
            interval=self.interval,
            max_delay=self.owners.ttl / 3,
            what="chat sweep",
        )

    async def _beat_and_sweep(self) -> None:
        await self.owners.beat()
        await self.sweep()

    async def sweep(self) -> int:
        """One pass (see the module docstring); how many items it ended."""
        live = {r.item_id: r async for r in live_items(self.acd.state, self.redis, ITEM_PREFIX)}
        owners = await self.owners.all()
        alive = await self.owners.alive(owners.values())
        statuses = await self._statuses({chat for chat in map(chat_of, live) if chat is not None})
        ended = 0
        for item_id in live:
            chat_id = chat_of(item_id)
            if chat_id is None:
                continue
            owner = owners.get(item_id)
            status = statuses.get(chat_id)
            if status is None or status == ChatStatus.ENDED:
                why = "its chat has ended"
            elif owner is not None and owner not in alive:
                why = f"its node {owner} is gone"
                await self._end_chat(chat_id)
            else:
                continue
            await end_item(self.acd, item_id, LeaveReason.CANCELLED)
            await self.owners.release(item_id)
            ended += 1
            log.warning("chat %d: item %s ended, %s", chat_id, item_id, why)
        for item_id, owner in owners.items():
            if item_id not in live and await self._forgettable(item_id, owner, alive):
                await self.owners.release(item_id)
        self.passes += 1
        self.ended += ended
        return ended

    async def _forgettable(self, item_id: str, owner: str, alive: set[str]) -> bool:
        """An owner entry of an item that is not live: gone with its dead owner, or finished
        (a live owner's entry without an item yet is a chat about to be queued)."""
        if owner not in alive:
            return True
        return await self.acd.state.item(item_id) is not None

    async def _statuses(self, chat_ids: set[int]) -> dict[int, ChatStatus]:
        out: dict[int, ChatStatus] = {}
        ordered = sorted(chat_ids)
        async with self.sessions() as session:
            for start in range(0, len(ordered), SQL_BATCH):
                batch = ordered[start : start + SQL_BATCH]
                rows = await session.execute(
                    select(ChatSession.id, ChatSession.status).where(ChatSession.id.in_(batch))
                )
                out.update({int(i): ChatStatus(s) for i, s in rows.all()})
        return out

    async def _end_chat(self, chat_id: int) -> None:
        async with self.sessions.begin() as session:
            chat = await session.get(ChatSession, chat_id, with_for_update=True)
            if chat is not None:
                await ChatRecords(session).end(chat, actor=ACTOR)
