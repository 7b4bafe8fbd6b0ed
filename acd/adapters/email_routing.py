"""Email tickets through the ACD: a dispatcher that reconciles the records (SQL) with the ACD.

Theory of operation
-------------------

Nothing lives only in this process: each pass of :meth:`EmailDispatcher.reconcile` reads what
should be (the tickets) and what is (the ACD's items in Redis) and moves the second towards the
first, so a restart, a second node or a lost reply costs at most one pass.

* **To route**: an email ticket (channel ``email``) that is new or open, has no assignee, is not
  merged and is not an automated message (``email-automated``) needs a work item. Its item id
  is ``email-<ticket id>`` (``email-<ticket id>.<n>`` for the n-th time the ticket is routed,
  when earlier items finished and the ticket was handed back), so enqueueing is idempotent:
  the ACD answers a repeat with the live item. The queue is the ticket's ``queue`` when the ACD
  has an email queue of that id, else the default email queue; the ticket's skills are the
  item's needs (minimum level 1), its priority the item's (low -1 ... urgent 2).
* **Offered**: when the ACD reserves an agent with email capacity for the item, the ticket is
  assigned to that agent in the records (audited, actor ``system:acd``; a new ticket becomes
  open, and an ``acd.email_assigned`` audit entry notes the item and the last message so far),
  then the item is accepted (:meth:`AcdService.answered`): the agent is on work. If the ACD
  refuses the accept (the offer expired meanwhile) the assignment is taken back.
* **Done**: the item ends (:meth:`AcdService.hung_up`: capacity released, wrap-up) when the
  assignee posts a public reply after the assignment, when the ticket leaves new/open
  (pending, on hold, solved, closed) or is merged, or when it is given to someone else.
* **No longer wanted**: an item still waiting (or offered) whose ticket got an assignee by other
  means, or was solved or merged, is cancelled.
* **A claim cut short**: a node that dies between the assignment in the records and the accept
  leaves a ticket assigned by this item (its ``acd.email_assigned`` entry names the item and
  the agent) while the item is waiting again (the offer expired: Redis requeued it at its old
  place) or offered to someone else; the agent was never on work, so their email capacity does
  not count it. Such an item is not cancelled as "assigned by other means": the assignment is
  taken back (audited, actor ``system:acd``), exactly as when the ACD refuses an accept, and the
  item goes on to whichever agent the ACD reserves next, the same one included. Taking it back
  rather than putting the item back as answered for the assignee, because the ACD has no way to
  force an item onto a named agent (that would skip its capacity, pause and logout checks: the
  agent may have gone to lunch since), and the item kept its place, so the customer loses
  nothing. If the assignee already replied publicly after the assignment, the work is done: the
  ticket stays theirs and the item is cancelled.

The items this process follows are found again after a restart by a sweep over the ACD's item
keys (``SCAN`` for ``item:email-*``, every ``sweep_every`` seconds and at start), so an item
assigned before a crash still ends when its ticket is answered.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from acd.adapters.item_scan import FINISHED, live_items
from acd.adapters.passes import run_passes
from acd.adapters.redis_state import ItemRecord
from acd.domain.call_events import LeaveReason
from acd.domain.work import Channel
from acd.errors import AcdError
from acd.service import AcdService, ItemEnded, WorkRequest
from tickets.email.sql_desk import AUTOMATED_TAG
from tickets.models import AuditEvent, AuthorKind, Direction, Message, Priority, Ticket, TicketTag
from tickets.models import Channel as TicketChannel
from tickets.models import TicketStatus as S
from tickets.repository import TicketRepository, record_audit

__all__ = ["ASSIGNED_ACTION", "EmailDispatcher", "NoEmailQueue", "item_ids"]

log = logging.getLogger(__name__)

ACTOR = "system:acd"
ASSIGNED_ACTION = "acd.email_assigned"
ITEM_PREFIX = "email-"
ROUTABLE = (S.NEW, S.OPEN)
MAX_GENERATIONS = 50
PRIORITIES = {Priority.LOW: -1, Priority.NORMAL: 0, Priority.HIGH: 1, Priority.URGENT: 2}


class NoEmailQueue(AcdError):
    """The ACD configuration has no queue on the email channel."""

    error_id = "acd-no-email-queue"


def item_ids(ticket_id: int) -> list[str]:
    """The ids the ticket's successive work items take, first to last."""
    first = f"{ITEM_PREFIX}{ticket_id}"
    return [first] + [f"{first}.{n}" for n in range(2, MAX_GENERATIONS + 1)]


def ticket_of(item_id: str) -> int | None:
    """The ticket id in an email item id, or None for another item."""
    if not item_id.startswith(ITEM_PREFIX):
        return None
    number = item_id[len(ITEM_PREFIX) :].split(".", 1)[0]
    return int(number) if number.isdigit() else None


@dataclass(frozen=True, slots=True)
class _TicketView:
    ticket_id: int
    status: S
    assignee: str | None
    merged: bool

    @property
    def routable(self) -> bool:
        return self.status in ROUTABLE and not self.merged


class EmailDispatcher:
    """See the module docstring; :meth:`run` under the node's TaskGroup."""

    def __init__(
        self,
        acd: AcdService,
        sessions: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        *,
        default_queue: str | None = None,
        interval: float = 1.0,
        sweep_every: float = 30.0,
        batch: int = 200,
    ) -> None:
        if interval <= 0 or sweep_every <= 0 or batch < 1:
            raise ValueError("interval, sweep_every and batch must be positive")
        self.acd = acd
        self.sessions = sessions
        self.redis = redis
        self.queues = tuple(
            queue_id for queue_id, q in acd.config.queues.items() if q.channel is Channel.EMAIL
        )
        if not self.queues:
            raise NoEmailQueue("the ACD configuration has no queue with channel: email")
        if default_queue is not None and default_queue not in self.queues:
            raise NoEmailQueue(f"{default_queue!r} is not an email queue of the ACD")
        self.default_queue = default_queue or self.queues[0]
        self.interval = interval
        self.sweep_every = sweep_every
        self.batch = batch
        self.live: dict[str, int] = {}  # item id -> ticket id, the items followed
        self.assigned = 0  # tickets this process gave to an agent
        self._next_sweep = 0.0
        self._closing = asyncio.Event()
        self._exhausted: set[int] = set()

    async def run(self) -> None:
        """Reconcile every ``interval`` until cancelled or closed; outages are logged and
        retried."""
        await self.acd.started.wait()
        await run_passes(
            self.reconcile,
            interval=self.interval,
            max_delay=30.0,
            what="email dispatch",
            closing=self._closing,
        )

    def close(self) -> None:
        """Stop :meth:`run` after the pass in progress (no database call cut in the middle)."""
        self._closing.set()

    async def reconcile(self) -> None:
        """One pass: sweep (when due), queue what needs an agent, follow what is queued."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_sweep:
            await self.sweep()
            self._next_sweep = loop.time() + self.sweep_every
        await self._queue_unassigned()
        for item_id, ticket_id in list(self.live.items()):
            await self._follow(item_id, ticket_id)

    async def sweep(self) -> None:
        """Find the live email items in Redis (after a restart, or another node's)."""
        async for record in live_items(self.acd.state, self.redis, ITEM_PREFIX):
            ticket_id = ticket_of(record.item_id)
            if ticket_id is not None:
                self.live.setdefault(record.item_id, ticket_id)

    # -- queueing ----------------------------------------------------------------------------

    async def _queue_unassigned(self) -> None:
        automated = exists().where(TicketTag.ticket_id == Ticket.id, TicketTag.tag == AUTOMATED_TAG)
        query = (
            select(Ticket.id, Ticket.queue, Ticket.skills, Ticket.priority)
            .where(
                Ticket.channel == TicketChannel.EMAIL,
                Ticket.status.in_(ROUTABLE),
                Ticket.assignee.is_(None),
                Ticket.merged_into_id.is_(None),
                ~automated,
            )
            .order_by(Ticket.id)
            .limit(self.batch)
        )
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
        followed = set(self.live.values())
        for ticket_id, queue, skills, priority in rows:
            if ticket_id in followed or ticket_id in self._exhausted:
                continue
            await self._enqueue(ticket_id, queue, list(skills or ()), priority)

    async def _enqueue(
        self, ticket_id: int, queue: str, skills: list[str], priority: Priority
    ) -> None:
        for item_id in item_ids(ticket_id):
            record = await self.acd.state.item(item_id)
            if record is not None and record.state in FINISHED:
                continue  # an earlier routing of this ticket, finished: the next id
            if record is None:
                request = WorkRequest(
                    item_id,
                    queue if queue in self.queues else self.default_queue,
                    priority=PRIORITIES.get(Priority(priority), 0),
                    needs={str(skill): 1 for skill in skills},
                )
                try:
                    await self.acd.enqueue(request)
                except ItemEnded:
                    continue  # finished just now by another node: the next id
                log.info("email ticket %d queued as %s in %s", ticket_id, item_id, request.queue)
            self.live[item_id] = ticket_id
            return
        self._exhausted.add(ticket_id)  # said once: a person has to look at this ticket
        log.error(
            "email ticket %d was routed %d times: not queued again", ticket_id, len(item_ids(0))
        )

    # -- following ---------------------------------------------------------------------------

    async def _follow(self, item_id: str, ticket_id: int) -> None:
        record = await self.acd.state.item(item_id)
        if record is None or record.state in FINISHED:
            self.live.pop(item_id, None)
            return
        ticket = await self._ticket(ticket_id)
        agent = record.agent_id
        if record.state == "assigned":
            if (
                ticket is None
                or not ticket.routable
                or ticket.assignee != agent
                or await self._answered(ticket_id, item_id, ticket.assignee)
            ):
                await self.acd.hung_up(item_id, ended_by="ticket")
                self.live.pop(item_id, None)
                log.info("email ticket %d done by %s", ticket_id, agent)
            return
        if (
            ticket is not None
            and ticket.routable
            and ticket.assignee not in (None, agent)
            and await self._cut_short(ticket_id, item_id, ticket.assignee)
        ):
            return  # handed back: the next pass follows the item as any other
        if ticket is None or not ticket.routable or ticket.assignee not in (None, agent):
            await self.acd.cancel(item_id, LeaveReason.CANCELLED.value)
            self.live.pop(item_id, None)
            return
        if record.state == "offered" and agent is not None:
            await self._claim(record, ticket_id, agent, taken=ticket.assignee == agent)

    async def _claim(self, record: ItemRecord, ticket_id: int, agent: str, *, taken: bool) -> None:
        """Give the ticket to the reserved agent, then accept the item."""
        if not taken and not await self._assign(ticket_id, record.item_id, agent):
            return
        if await self.acd.answered(record.item_id):
            self.assigned += 1
            log.info("email ticket %d assigned to %s (%s)", ticket_id, agent, record.item_id)
            return
        log.info("email ticket %d: the offer to %s was lost; handing it back", ticket_id, agent)
        await self._hand_back(ticket_id, agent)

    async def _hand_back(self, ticket_id: int, agent: str) -> None:
        """Take the ticket back from ``agent`` (if it is still theirs)."""
        async with self.sessions.begin() as session:
            repo = TicketRepository(session)
            ticket = await repo.get(ticket_id, for_update=True)
            if ticket.assignee == agent:
                await repo.assign(ticket, None, actor=ACTOR)

    async def _cut_short(self, ticket_id: int, item_id: str, assignee: str | None) -> bool:
        """Whether this item assigned the ticket to ``assignee`` and was never accepted (a node
        died in between: see the module docstring); if so and the assignee has not replied yet,
        the ticket is handed back."""
        async with self.sessions() as session:
            mark = await self._mark(session, ticket_id, item_id)
        if mark is None or mark.get("agent") != assignee or assignee is None:
            return False
        if await self._answered(ticket_id, item_id, assignee):
            return False  # the work is done: the item is cancelled, the ticket stays theirs
        log.warning(
            "email ticket %d: %s was assigned by %s but never accepted; handing it back",
            ticket_id,
            assignee,
            item_id,
        )
        await self._hand_back(ticket_id, assignee)
        return True

    async def _assign(self, ticket_id: int, item_id: str, agent: str) -> bool:
        async with self.sessions.begin() as session:
            repo = TicketRepository(session)
            ticket = await repo.get(ticket_id, for_update=True)
            if ticket.assignee is not None or ticket.status not in ROUTABLE:
                return False
            if ticket.merged_into_id is not None:
                return False
            await repo.assign(ticket, agent, actor=ACTOR)
            if ticket.status == S.NEW:
                await repo.transition(ticket, S.OPEN, actor=ACTOR)
            last = await session.scalar(
                select(func.max(Message.id)).where(Message.ticket_id == ticket_id)
            )
            record_audit(
                session,
                at=repo.clock(),
                actor=ACTOR,
                action=ASSIGNED_ACTION,
                ticket_id=ticket_id,
                customer_id=ticket.customer_id,
                data={"item": item_id, "agent": agent, "after_message": last or 0},
            )
        return True

    async def _ticket(self, ticket_id: int) -> _TicketView | None:
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(Ticket.status, Ticket.assignee, Ticket.merged_into_id).where(
                        Ticket.id == ticket_id
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        return _TicketView(ticket_id, S(row[0]), row[1], row[2] is not None)

    async def _answered(self, ticket_id: int, item_id: str, agent: str | None) -> bool:
        """Whether the agent posted a public reply since the item made the ticket theirs."""
        async with self.sessions() as session:
            mark = await self._mark(session, ticket_id, item_id)
            after = int(mark.get("after_message") or 0) if mark is not None else 0
            reply = await session.scalar(
                select(Message.id)
                .where(
                    Message.ticket_id == ticket_id,
                    Message.id > after,
                    Message.internal.is_(False),
                    Message.direction == Direction.OUTBOUND,
                    Message.author_kind == AuthorKind.AGENT,
                    Message.author == (agent or ""),
                )
                .limit(1)
            )
        return reply is not None

    @staticmethod
    async def _mark(session: AsyncSession, ticket_id: int, item_id: str) -> dict[str, Any] | None:
        """The ``acd.email_assigned`` entry's data of the item's assignment, if there is one."""
        marks = await session.execute(
            select(AuditEvent.data)
            .where(AuditEvent.ticket_id == ticket_id, AuditEvent.action == ASSIGNED_ACTION)
            .order_by(AuditEvent.id.desc())
        )
        for (data,) in marks:
            if isinstance(data, dict) and data.get("item") == item_id:
                return data
        return None
