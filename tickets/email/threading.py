"""Reply threading: decide which ticket an inbound message belongs to (pure; lookups are injected).

Theory of operation (research note shared/reference/helpdesk-anchors.md, section c.1/c.2; the
header semantics are RFC 5322 section 3.6.4):

1. ``In-Reply-To`` then ``References`` (newest parent first, the root last) are matched against
   the Message-IDs the help desk knows (every message it sent or stored), through the
   ``TicketDirectory`` port. Our own outbound Message-IDs are also *signed*
   (``cc.<number>.<nonce>.<hmac>@domain``), so a reply whose References were truncated or whose
   ids the store lost still threads when any one of our ids survives (FreeScout's idea).
2. A signed reply token ``<number>-<hmac>`` (HMAC-SHA256 keyed by a secret from the environment,
   truncated to 80 bits), found in a recipient's plus-address (``support+t42-…@``) or in the body
   marker ``{#CC:42-…#}``. A token whose signature does not verify is refused and noted.
3. A subject tag ``[#<number>]``, accepted ONLY when the sender is a participant of that ticket
   (osTicket's rule; Zammad #5064 shows what happens without it). Otherwise: a new ticket.

Closed and merged tickets (decision, documented):

* merged: the reply follows ``merged_into`` to the surviving ticket (bounded hops, cycle-safe).
* solved within ``reopen_window`` (7 days by default): the ticket is reopened.
* solved longer ago, or closed: a NEW ticket linked to the old one (RT's RepliesToResolved,
  Zendesk's closed-ticket follow-up), so a finished ticket's history and SLA figures never move.

A message whose own Message-ID is already stored is marked a duplicate delivery (the same mail
to several of our addresses, Znuny's MessageID check); it is still handed on, never dropped.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from hashlib import sha256

from tickets.email import EmailConfigError
from tickets.email.parse import ParsedMessage

__all__ = [
    "TOKEN_SECRET_ENV",
    "MatchedBy",
    "ReplyTokenSigner",
    "ThreadAction",
    "ThreadClues",
    "ThreadDecision",
    "ThreadingPolicy",
    "TicketState",
    "TicketSummary",
    "body_marker",
    "decide",
    "gather_clues",
    "merge_targets",
]

TOKEN_SECRET_ENV = "CALLCENTER_EMAIL_SECRET"  # the settings' ``[email] secret``
_SIG_HEX = 20  # 80 bits of HMAC-SHA256
_TOKEN_BODY = re.compile(r"\{#CC:(\d{1,12})-([0-9a-fA-F]{1,64})#\}")
_TOKEN_ADDRESS = re.compile(r"\+t(\d{1,12})-([0-9a-f]{1,64})@", re.IGNORECASE)
_OUR_MSGID = re.compile(r"^cc\.(\d{1,12})\.([0-9a-z]{1,32})\.([0-9a-f]{1,64})@", re.IGNORECASE)
_SUBJECT_TAG = re.compile(r"\[#(\d{1,12})\]")


class TicketState(StrEnum):
    """What threading needs to know of a ticket's status (the records map their statuses here)."""

    OPEN = "open"  # new, open, pending, on hold: replies append
    SOLVED = "solved"  # replies reopen it within the reopen window
    CLOSED = "closed"  # final: replies start a linked ticket
    MERGED = "merged"  # replies go to ``merged_into``


@dataclass(frozen=True, slots=True)
class TicketSummary:
    """The slice of a ticket that threading reads: number, state and participants' addresses."""

    number: int
    state: TicketState
    participants: frozenset[str] = frozenset()
    solved_at: datetime | None = None
    merged_into: int | None = None


class ReplyTokenSigner:
    """Signs and verifies reply tokens and our own Message-IDs with one HMAC secret."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise EmailConfigError(
                f"{TOKEN_SECRET_ENV} (email.secret): the reply-token secret needs >= 16 bytes"
            )
        self._secret = secret

    @classmethod
    def from_setting(cls, value: str) -> ReplyTokenSigner:
        """The signer for ``[email] secret`` (``CALLCENTER_EMAIL_SECRET``); fail naming it."""
        if not value:
            raise EmailConfigError(f"{TOKEN_SECRET_ENV} (email.secret) is not set")
        return cls(value.encode())

    def _sign(self, purpose: str, payload: str) -> str:
        mac = hmac.new(self._secret, f"{purpose}:{payload}".encode(), sha256)
        return mac.hexdigest()[:_SIG_HEX]

    def token(self, number: int) -> str:
        """``<number>-<signature>``: goes into the Reply-To plus-address and the body marker."""
        return f"{number}-{self._sign('ticket', str(number))}"

    def verify_token(self, number: str, signature: str) -> int | None:
        if hmac.compare_digest(self._sign("ticket", number), signature.lower()):
            return int(number)
        return None

    def message_id(self, number: int, nonce: str, domain: str) -> str:
        """One of our outbound Message-IDs (without angle brackets), signed for ``number``."""
        payload = f"{number}.{nonce}"
        return f"cc.{payload}.{self._sign('mid', payload)}@{domain}"

    def verify_message_id(self, message_id: str) -> int | None:
        """The ticket number of one of our signed Message-IDs, or None."""
        match = _OUR_MSGID.match(message_id)
        if match is None:
            return None
        number, nonce, signature = match.groups()
        expected = self._sign("mid", f"{number}.{nonce}")
        return int(number) if hmac.compare_digest(expected, signature.lower()) else None

    def __repr__(self) -> str:
        return "ReplyTokenSigner(<secret>)"


def body_marker(signer: ReplyTokenSigner, number: int) -> str:
    """The hidden body marker carrying the signed token, e.g. ``{#CC:42-0a1b…#}``."""
    return "{#CC:" + signer.token(number) + "#}"


@dataclass(frozen=True, slots=True)
class ThreadingPolicy:
    reopen_window: timedelta = timedelta(days=7)
    max_merge_hops: int = 8


@dataclass(frozen=True, slots=True)
class ThreadClues:
    """Everything in one message that can point at a ticket, before any lookup."""

    sender: str | None
    own_message_id: str | None
    reference_ids: tuple[str, ...]
    signed_numbers: tuple[int, ...]
    subject_numbers: tuple[int, ...]
    tampered_tokens: int = 0

    @property
    def numbers(self) -> tuple[int, ...]:
        """Ticket numbers to look up: signed ones first, then subject tags."""
        return tuple(dict.fromkeys(self.signed_numbers + self.subject_numbers))

    @property
    def message_ids(self) -> tuple[str, ...]:
        """Message-IDs to look up: the references and the message's own (duplicate check)."""
        own = (self.own_message_id,) if self.own_message_id else ()
        return tuple(dict.fromkeys(self.reference_ids + own))


def _ordered_references(message: ParsedMessage) -> tuple[str, ...]:
    ordered = list(message.in_reply_to) + list(reversed(message.references))
    return tuple(dict.fromkeys(ordered))


def gather_clues(
    message: ParsedMessage, recipients: Iterable[str], signer: ReplyTokenSigner
) -> ThreadClues:
    """Collect references, verified tokens and subject tags from ``message`` (no lookups)."""
    references = _ordered_references(message)
    signed: list[int] = []
    tampered = 0
    for mid in references:
        number = signer.verify_message_id(mid)
        if number is not None:
            signed.append(number)
    addresses = [*recipients, *message.to, *message.cc]
    candidates = [m.groups() for a in addresses for m in _TOKEN_ADDRESS.finditer(a + "@")]
    candidates += [m.groups() for m in _TOKEN_BODY.finditer(message.text)]
    for number_text, signature in candidates:
        number = signer.verify_token(number_text, signature)
        if number is None:
            tampered += 1
        else:
            signed.append(number)
    own = message.message_id
    if own is not None and signer.verify_message_id(own) is not None:
        own = None  # our own id on an inbound mail is a loop, not a duplicate delivery
    return ThreadClues(
        sender=message.from_address,
        own_message_id=own,
        reference_ids=references,
        signed_numbers=tuple(dict.fromkeys(signed)),
        subject_numbers=tuple(dict.fromkeys(int(n) for n in _SUBJECT_TAG.findall(message.subject))),
        tampered_tokens=tampered,
    )


def merge_targets(found: Iterable[TicketSummary], known: Iterable[int]) -> set[int]:
    """Numbers of surviving tickets still to look up for merged tickets in ``found``."""
    known_set = set(known)
    return {
        t.merged_into
        for t in found
        if t.state is TicketState.MERGED
        and t.merged_into is not None
        and t.merged_into not in known_set
    }


class ThreadAction(StrEnum):
    APPEND = "append"
    REOPEN = "reopen"
    NEW_TICKET = "new-ticket"


class MatchedBy(StrEnum):
    REFERENCES = "references"
    REPLY_TOKEN = "reply-token"
    SUBJECT_TAG = "subject-tag"
    NOTHING = "nothing"


@dataclass(frozen=True, slots=True)
class ThreadDecision:
    """Where the message goes: append to / reopen ``ticket_number``, or a new ticket.

    ``linked_to`` names the finished ticket a new ticket follows up; ``notes`` are stable slugs
    for the audit trail (``tampered-token-refused``, ``subject-tag-refused:42``, …).
    """

    action: ThreadAction
    matched_by: MatchedBy
    ticket_number: int | None = None
    linked_to: int | None = None
    sender_is_participant: bool = False
    duplicate: bool = False
    notes: tuple[str, ...] = field(default=())


def _survivor(
    ticket: TicketSummary,
    by_number: Mapping[int, TicketSummary],
    policy: ThreadingPolicy,
    notes: list[str],
) -> TicketSummary:
    seen = {ticket.number}
    current = ticket
    while current.state is TicketState.MERGED and current.merged_into is not None:
        target = by_number.get(current.merged_into)
        if target is None or target.number in seen or len(seen) > policy.max_merge_hops:
            notes.append(f"merge-target-unresolved:{current.number}")
            return current
        notes.append(f"redirected-from-merged:{current.number}")
        seen.add(target.number)
        current = target
    return current


def _settle(
    named: TicketSummary,
    matched_by: MatchedBy,
    sender: str | None,
    by_number: Mapping[int, TicketSummary],
    policy: ThreadingPolicy,
    now: datetime,
    notes: list[str],
    duplicate: bool,
) -> ThreadDecision:
    ticket = _survivor(named, by_number, policy, notes)
    participant = sender is not None and (
        sender in ticket.participants or sender in named.participants
    )

    def decision(action: ThreadAction, number: int | None, linked: int | None) -> ThreadDecision:
        return ThreadDecision(
            action, matched_by, number, linked, participant, duplicate, tuple(notes)
        )

    if ticket.state is TicketState.OPEN:
        return decision(ThreadAction.APPEND, ticket.number, None)
    if ticket.state is TicketState.SOLVED:
        if ticket.solved_at is not None and now - ticket.solved_at <= policy.reopen_window:
            notes.append(f"reopened:{ticket.number}")
            return decision(ThreadAction.REOPEN, ticket.number, None)
        notes.append(f"reply-to-solved-after-window:{ticket.number}")
    elif ticket.state is TicketState.CLOSED:
        notes.append(f"reply-to-closed:{ticket.number}")
    return decision(ThreadAction.NEW_TICKET, None, ticket.number)


def decide(
    clues: ThreadClues,
    by_message_id: Mapping[str, TicketSummary],
    by_number: Mapping[int, TicketSummary],
    now: datetime,
    policy: ThreadingPolicy | None = None,
) -> ThreadDecision:
    """Apply the three signals in order (references, signed token, subject tag) to the lookups.

    ``by_message_id`` / ``by_number`` are the directory's answers for ``clues.message_ids`` and
    ``clues.numbers`` plus the merge survivors (see :func:`merge_targets`).
    """
    policy = policy or ThreadingPolicy()
    notes: list[str] = []
    if clues.tampered_tokens:
        notes.append("tampered-token-refused")
    duplicate = clues.own_message_id is not None and clues.own_message_id in by_message_id
    if duplicate:
        notes.append("duplicate-delivery")
    sender = clues.sender

    def settle(ticket: TicketSummary, matched_by: MatchedBy) -> ThreadDecision:
        return _settle(ticket, matched_by, sender, by_number, policy, now, notes, duplicate)

    if duplicate and clues.own_message_id is not None:  # already stored: point at that ticket
        stored = by_message_id[clues.own_message_id]
        participant = sender is not None and sender in stored.participants
        return ThreadDecision(
            ThreadAction.APPEND, MatchedBy.REFERENCES, stored.number, None, participant, True,
            tuple(notes),
        )  # fmt: skip
    for mid in clues.reference_ids:
        ticket = by_message_id.get(mid)
        if ticket is not None:
            return settle(ticket, MatchedBy.REFERENCES)
    for number in clues.signed_numbers:
        ticket = by_number.get(number)
        if ticket is not None:
            return settle(ticket, MatchedBy.REPLY_TOKEN)
        notes.append(f"token-for-unknown-ticket:{number}")
    for number in clues.subject_numbers:
        ticket = by_number.get(number)
        if ticket is None:
            notes.append(f"subject-tag-unknown:{number}")
            continue
        survivor = _survivor(ticket, by_number, policy, [])
        if sender is not None and (
            sender in ticket.participants or sender in survivor.participants
        ):
            return settle(ticket, MatchedBy.SUBJECT_TAG)
        notes.append(f"subject-tag-refused:{number}")
    return ThreadDecision(ThreadAction.NEW_TICKET, MatchedBy.NOTHING, notes=tuple(notes))
