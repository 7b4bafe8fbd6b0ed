"""Web chat records: a chat is a ticket (channel chat), its messages the transcript; offline mail.

A visitor is identified by the visitor id inside their signed visitor token (a *known* chat
identity of one customer); an email address they type is only a *maybe* identity, since nobody
checked it. Message bodies are stored exactly as typed, as ``text/plain``: markup in a chat
message is text, and every renderer escapes it. The routing port `ChatRouting` is how the chat
channel asks the ACD (or, until it is wired, the connected agents) to take a chat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tickets.customers import CustomerDirectory
from tickets.errors import (
    IdentityConflict,
    InvalidIdentity,
    SurveyAlreadyAnswered,
    TicketsError,
)
from tickets.models import (
    AuthorKind,
    Base,
    Channel,
    Confidence,
    Direction,
    EnumText,
    IdentityKind,
    Message,
    Ticket,
    TicketStatus,
)
from tickets.repository import Clock, TicketRepository, record_audit, utc_now
from tickets.surveys import SurveyResponse, Surveys

MAX_MESSAGE_CHARS = 4000
CHAT_QUEUE = "chat"


class ChatStatus(StrEnum):
    WAITING = "waiting"  # offered, nobody has taken it yet
    ACTIVE = "active"
    ENDED = "ended"


class ChatError(TicketsError):
    """Base of the chat channel's errors."""

    error_id = "chat-error"


class ChatMessageInvalid(ChatError):
    """An empty message, or one longer than `MAX_MESSAGE_CHARS`."""

    error_id = "chat-message-invalid"


class ChatNotFound(ChatError):
    error_id = "chat-not-found"


class ChatEnded(ChatError):
    """The chat is over: rate it, or start a new one."""

    error_id = "chat-ended"


class RatingInvalid(ChatError):
    error_id = "chat-rating-invalid"


class ChatSession(Base):
    """One conversation in the widget, on its ticket; its rating is also its survey answer."""

    __tablename__ = "chat_sessions"
    __table_args__ = (
        CheckConstraint("status IN ('waiting', 'active', 'ended')", name="status"),
        CheckConstraint("rating IS NULL OR (rating >= 1 AND rating <= 5)", name="rating"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visitor_id: Mapped[str] = mapped_column(String(64), index=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    visitor_name: Mapped[str] = mapped_column(String(200), default="")
    visitor_email: Mapped[str] = mapped_column(String(320), default="")
    status: Mapped[ChatStatus] = mapped_column(EnumText(ChatStatus))
    agent: Mapped[str | None] = mapped_column(String(64))
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


@dataclass(frozen=True, slots=True)
class ChatWorkItem:
    """What the router needs to place a chat: a work item on the chat channel."""

    chat_id: int
    ticket_id: int
    ticket_number: str
    channel: Channel = Channel.CHAT
    queue: str = CHAT_QUEUE
    skills: tuple[str, ...] = ()
    language: str = ""
    visitor_name: str = ""


@dataclass(frozen=True, slots=True)
class ChatWaiting:
    """Where a waiting chat stands: 1-based position in its queue, expected wait in seconds
    (None when it cannot be told)."""

    position: int
    expected_wait: float | None = None


#: Told each time a waiting chat's place changes (the widget shows it to the visitor).
WaitListener = Callable[[ChatWaiting], Awaitable[None]]


class ChatRouting(Protocol):
    """The ACD's side of the chat channel.

    :meth:`offer` may take long (the chat waits in a queue): the chat channel runs it in its
    own task and cancels that task when the visitor leaves first; either way it then calls
    :meth:`ended` once, which releases whatever the router holds for the chat.
    """

    async def offer(self, item: ChatWorkItem, on_wait: WaitListener | None = None) -> str | None:
        """Find an agent with chat capacity for the chat, waiting in its queue if need be;
        the agent's user name once one took it, or None when nobody can (outside business
        hours, nobody staffed). ``on_wait`` hears the chat's place while it waits."""
        ...

    async def ended(self, item: ChatWorkItem) -> None:
        """The chat is over (either side ended it, or its visitor left while it waited)."""
        ...


def check_text(text: str) -> str:
    """The body to store: exactly as typed, unless empty or too long (`ChatMessageInvalid`)."""
    if not text.strip():
        raise ChatMessageInvalid("an empty message")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ChatMessageInvalid(f"a chat message has at most {MAX_MESSAGE_CHARS} characters")
    return text


class ChatRecords:
    """Chats, their tickets and transcripts inside the caller's transaction."""

    def __init__(self, session: AsyncSession, clock: Clock = utc_now) -> None:
        self.session = session
        self.clock = clock
        self.tickets = TicketRepository(session, clock)
        self.customers = CustomerDirectory(session, clock)

    async def get(self, chat_id: int) -> ChatSession:
        chat = await self.session.get(ChatSession, chat_id)
        if chat is None:
            raise ChatNotFound(f"no chat {chat_id}")
        return chat

    async def start(
        self, visitor_id: str, first_text: str, *, name: str = "", email: str = ""
    ) -> tuple[ChatSession, Ticket, Message]:
        """Open a chat ticket for the visitor's first message."""
        body = check_text(first_text)
        actor = f"visitor:{visitor_id}"
        found = await self.customers.find_or_create(
            IdentityKind.CHAT, visitor_id, actor=actor, display_name=name[:200]
        )
        customer = found.customer
        if email:
            await self._maybe_email(customer.id, email, actor)
        ticket = await self.tickets.create(
            subject=f"Chat: {' '.join(body.split())[:80]}",
            channel=Channel.CHAT,
            actor=actor,
            customer_id=customer.id,
            queue=CHAT_QUEUE,
        )
        chat = ChatSession(
            visitor_id=visitor_id,
            ticket_id=ticket.id,
            customer_id=customer.id,
            visitor_name=name[:200],
            visitor_email=email[:320],
            status=ChatStatus.WAITING,
            rating_comment="",
            created_at=self.clock(),
        )
        self.session.add(chat)
        await self.session.flush()
        message = await self._add(ticket, body, from_visitor=True, author=name or "visitor")
        return chat, ticket, message

    async def _maybe_email(self, customer_id: int, email: str, actor: str) -> None:
        customer = await self.customers.get(customer_id)
        try:
            async with self.session.begin_nested():
                await self.customers.add_identity(
                    customer,
                    IdentityKind.EMAIL,
                    email,
                    actor=actor,
                    confidence=Confidence.MAYBE,
                    source="chat widget",
                )
        except (InvalidIdentity, IdentityConflict):
            return  # a typed address is a hint only; the chat goes on without it

    async def add_message(
        self, chat: ChatSession, text: str, *, from_visitor: bool, author: str
    ) -> Message:
        if chat.status == ChatStatus.ENDED:
            raise ChatEnded(f"chat {chat.id} has ended")
        ticket = await self.tickets.get(chat.ticket_id)
        return await self._add(ticket, check_text(text), from_visitor=from_visitor, author=author)

    async def _add(self, ticket: Ticket, body: str, *, from_visitor: bool, author: str) -> Message:
        return await self.tickets.add_message(
            ticket,
            channel=Channel.CHAT,
            direction=Direction.INBOUND if from_visitor else Direction.OUTBOUND,
            author_kind=AuthorKind.CUSTOMER if from_visitor else AuthorKind.AGENT,
            body=body,
            actor=f"visitor:{author}" if from_visitor else f"user:{author}",
            author=author[:200],
            content_type="text/plain",
        )

    async def assign(self, chat: ChatSession, agent: str) -> Ticket:
        chat.agent = agent
        chat.status = ChatStatus.ACTIVE
        ticket = await self.tickets.get(chat.ticket_id)
        await self.tickets.assign(ticket, agent, actor="system:chat")
        if ticket.status == TicketStatus.NEW:
            await self.tickets.transition(ticket, TicketStatus.OPEN, actor="system:chat")
        return ticket

    async def end(self, chat: ChatSession, *, actor: str) -> None:
        if chat.status == ChatStatus.ENDED:
            return
        chat.status = ChatStatus.ENDED
        chat.ended_at = self.clock()
        record_audit(
            self.session,
            at=self.clock(),
            actor=actor,
            action="chat.ended",
            ticket_id=chat.ticket_id,
            customer_id=chat.customer_id,
            data={"chat_id": chat.id},
        )

    async def rate(self, chat: ChatSession, score: int, comment: str = "") -> SurveyResponse:
        """The visitor's rating of an ended chat, once: kept on the chat and as the chat's survey
        answer on its ticket (CSAT reports). The widget's 1..5 (5 best) is the survey scale.
        A second rating is refused (`SurveyAlreadyAnswered`) and changes nothing."""
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise RatingInvalid("a rating is a whole number from 1 to 5")
        if chat.status != ChatStatus.ENDED:
            raise RatingInvalid("a chat is rated after it ends")
        if chat.rating is not None:  # also a chat rated before ratings became survey answers
            raise SurveyAlreadyAnswered(f"chat {chat.id} was already rated")
        response = await Surveys(self.session, self.clock).record_chat_rating(
            await self.tickets.get(chat.ticket_id),
            chat_id=str(chat.id),
            score=score,
            comment=comment,
            agent=chat.agent,
        )
        chat.rating = score
        chat.rating_comment = comment[:MAX_MESSAGE_CHARS]
        record_audit(
            self.session,
            at=self.clock(),
            actor=f"visitor:{chat.visitor_id}",
            action="ticket.rated",
            ticket_id=chat.ticket_id,
            customer_id=chat.customer_id,
            data={"chat_id": chat.id, "rating": score, "channel": "chat"},
        )
        return response

    async def for_ticket(self, ticket_id: int) -> list[ChatSession]:
        query = select(ChatSession).where(ChatSession.ticket_id == ticket_id)
        return list((await self.session.execute(query.order_by(ChatSession.id))).scalars())

    async def offline_message(self, *, name: str, email: str, text: str) -> tuple[Ticket, Message]:
        """Nobody could take the chat: the visitor's message becomes an email ticket."""
        body = check_text(text)
        found = await self.customers.find_or_create(
            IdentityKind.EMAIL, email, actor="system:chat-offline", display_name=name[:200]
        )
        ticket = await self.tickets.create(
            subject=f"Offline chat message: {' '.join(body.split())[:60]}",
            channel=Channel.EMAIL,
            actor="system:chat-offline",
            customer_id=found.customer.id,
            queue=CHAT_QUEUE,
            tags=("offline-chat",),
        )
        message = await self.tickets.add_message(
            ticket,
            channel=Channel.CHAT,
            direction=Direction.INBOUND,
            author_kind=AuthorKind.CUSTOMER,
            body=body,
            actor="system:chat-offline",
            author=name[:200] or email,
        )
        return ticket, message
