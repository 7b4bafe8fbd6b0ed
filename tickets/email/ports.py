"""Ports the email channel needs from the ticket records, and in-memory versions for tests.

The records (tickets/models.py, repository.py) implement :class:`TicketDirectory` and
:class:`InboundMailSink`; the email channel never imports them. Message-IDs are passed without
angle brackets, e-mail addresses in lower case.

Contract for :meth:`InboundMailSink.accept`: store the message (raw bytes included) atomically
and return, or raise; raising makes the SMTP server answer ``451`` so the sender retries, so a
message is never half-stored and never lost.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from tickets.email.loops import LoopVerdict
from tickets.email.parse import ParsedMessage
from tickets.email.threading import ThreadAction, ThreadDecision, TicketState, TicketSummary

__all__ = [
    "InMemoryHelpDesk",
    "InboundMail",
    "InboundMailSink",
    "StoredMail",
    "TicketDirectory",
    "TicketState",
    "TicketSummary",
]


class TicketDirectory(Protocol):
    """Read side: find tickets by one of their messages' Message-ID, or by human number."""

    async def tickets_by_message_ids(
        self, message_ids: Sequence[str]
    ) -> Mapping[str, TicketSummary]: ...

    async def tickets_by_numbers(self, numbers: Sequence[int]) -> Mapping[int, TicketSummary]: ...


@dataclass(frozen=True, slots=True)
class InboundMail:
    """One received message, parsed, classified and threaded, ready to be stored."""

    message: ParsedMessage
    sender: str | None
    envelope_sender: str | None
    recipients: tuple[str, ...]
    thread: ThreadDecision
    loop: LoopVerdict
    received_at: datetime

    @property
    def raw(self) -> bytes:
        return self.message.raw

    @property
    def needs_review(self) -> bool:
        return self.message.needs_review


class InboundMailSink(Protocol):
    """Write side: store one inbound message on the ticket its thread decision names."""

    async def accept(self, mail: InboundMail) -> None: ...


@dataclass(slots=True)
class _MemoryTicket:
    summary: TicketSummary
    linked_to: int | None = None
    message_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredMail:
    mail: InboundMail
    ticket_number: int


class InMemoryHelpDesk:
    """In-memory TicketDirectory + InboundMailSink for tests and benchmarks (not for production).

    ``on_stored`` is awaited after each stored message (tests use it to send acknowledgements
    when ``mail.loop.notify`` is true). ``fail_next`` makes the next ``accept`` raise.
    """

    def __init__(
        self,
        on_stored: Callable[[StoredMail], Awaitable[None]] | None = None,
        first_number: int = 1000,
    ) -> None:
        self.tickets: dict[int, _MemoryTicket] = {}
        self.stored: list[StoredMail] = []
        self.fail_next = False
        self._by_message_id: dict[str, int] = {}
        self._numbers = itertools.count(first_number)
        self._on_stored = on_stored

    # -- test setup -----------------------------------------------------------------------------
    def add_ticket(
        self,
        participants: Sequence[str] = (),
        state: TicketState = TicketState.OPEN,
        *,
        solved_at: datetime | None = None,
        merged_into: int | None = None,
        message_ids: Sequence[str] = (),
    ) -> TicketSummary:
        number = next(self._numbers)
        summary = TicketSummary(
            number, state, frozenset(p.lower() for p in participants), solved_at, merged_into
        )
        self.tickets[number] = _MemoryTicket(summary)
        for mid in message_ids:
            self.record_message_id(number, mid)
        return summary

    def set_state(
        self,
        number: int,
        state: TicketState,
        *,
        solved_at: datetime | None = None,
        merged_into: int | None = None,
    ) -> None:
        ticket = self.tickets[number]
        ticket.summary = replace(
            ticket.summary, state=state, solved_at=solved_at, merged_into=merged_into
        )

    def record_message_id(self, number: int, message_id: str) -> None:
        """Remember a Message-ID (an outbound notification's, or a stored inbound one's)."""
        self.tickets[number].message_ids.append(message_id)
        self._by_message_id.setdefault(message_id, number)

    def summary(self, number: int) -> TicketSummary:
        return self.tickets[number].summary

    def linked_to(self, number: int) -> int | None:
        return self.tickets[number].linked_to

    # -- TicketDirectory ------------------------------------------------------------------------
    async def tickets_by_message_ids(
        self, message_ids: Sequence[str]
    ) -> Mapping[str, TicketSummary]:
        return {
            mid: self.tickets[self._by_message_id[mid]].summary
            for mid in message_ids
            if mid in self._by_message_id
        }

    async def tickets_by_numbers(self, numbers: Sequence[int]) -> Mapping[int, TicketSummary]:
        return {n: self.tickets[n].summary for n in numbers if n in self.tickets}

    # -- InboundMailSink ------------------------------------------------------------------------
    async def accept(self, mail: InboundMail) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("in-memory sink asked to fail")
        decision = mail.thread
        if decision.action is ThreadAction.NEW_TICKET or decision.ticket_number is None:
            participants = (mail.sender,) if mail.sender else ()
            number = self.add_ticket(participants).number
            self.tickets[number].linked_to = decision.linked_to
        else:
            number = decision.ticket_number
            if decision.action is ThreadAction.REOPEN:
                self.set_state(number, TicketState.OPEN)
        if mail.message.message_id and not decision.duplicate:
            self.record_message_id(number, mail.message.message_id)
        stored = StoredMail(mail, number)
        self.stored.append(stored)
        if self._on_stored is not None:
            await self._on_stored(stored)
