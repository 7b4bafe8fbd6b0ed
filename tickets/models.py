"""The help desk's records as SQLAlchemy 2 typed ORM models (schema owned by the Alembic revisions).

Tables: customers and their identities (phone in E.164, email, chat handle; `known` or `maybe`),
tickets with a human number per year, tags, messages and their attachments, call records, links
between tickets, the per-year number counter and the audit history. Enumerations are stored as
short strings (portable across SQLite and PostgreSQL, readable in SQL) and come back as `StrEnum`.
Timestamps are stored with time zone and always come back as aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class TicketStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    SOLVED = "solved"
    CLOSED = "closed"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Channel(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    CHAT = "chat"
    WEB = "web"
    API = "api"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class AuthorKind(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    SYSTEM = "system"


class IdentityKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    CHAT = "chat"


class Confidence(StrEnum):
    KNOWN = "known"
    MAYBE = "maybe"


class LinkKind(StrEnum):
    RELATED = "related"
    DUPLICATE = "duplicate"
    MERGED_INTO = "merged_into"
    SPLIT_FROM = "split_from"


class Disposition(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    VOICEMAIL = "voicemail"
    CALLBACK = "callback"
    SELF_SERVICE = "self_service"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"


E = TypeVar("E", bound=StrEnum)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp: naive values are refused, results are UTC on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite keeps no zone; we only ever write UTC
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class EnumText(TypeDecorator[E], Generic[E]):
    """A `StrEnum` stored as its value in a VARCHAR column."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int = 16) -> None:
        longest = max((len(member.value) for member in enum), default=0)
        if longest > length:
            raise ValueError(f"{enum.__name__}: a value of {longest} characters > {length}")
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


def _check_in(column: str, enum: type[StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON()}


class Customer(Base):
    """A person or organisation that contacts us; merged ones point at the survivor."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)


class CustomerIdentity(Base):
    """One way to recognise a customer; a `known` identity belongs to at most one customer."""

    __tablename__ = "customer_identities"
    __table_args__ = (
        UniqueConstraint("customer_id", "kind", "value"),
        Index(
            "uq_customer_identities_known",
            "kind",
            "value",
            unique=True,
            sqlite_where=text("confidence = 'known'"),
            postgresql_where=text("confidence = 'known'"),
        ),
        Index("ix_customer_identities_lookup", "kind", "value"),
        CheckConstraint(_check_in("kind", IdentityKind), name="kind"),
        CheckConstraint(_check_in("confidence", Confidence), name="confidence"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[IdentityKind] = mapped_column(EnumText(IdentityKind))
    value: Mapped[str] = mapped_column(String(320))
    confidence: Mapped[Confidence] = mapped_column(EnumText(Confidence))
    source: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime]


class TicketCounter(Base):
    """The last human number handed out in a year (incremented by an atomic upsert)."""

    __tablename__ = "ticket_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer)


class Ticket(Base):
    """A request, whatever channel it came in on."""

    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("year", "seq"),
        Index("ix_tickets_customer_activity", "customer_id", "status", "last_activity_at"),
        CheckConstraint(_check_in("status", TicketStatus), name="status"),
        CheckConstraint(_check_in("priority", Priority), name="priority"),
        CheckConstraint(_check_in("channel", Channel), name="channel"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(24), unique=True)
    subject: Mapped[str] = mapped_column(String(300))
    status: Mapped[TicketStatus] = mapped_column(EnumText(TicketStatus))
    priority: Mapped[Priority] = mapped_column(EnumText(Priority))
    channel: Mapped[Channel] = mapped_column(EnumText(Channel))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    queue: Mapped[str] = mapped_column(String(64), default="")
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    assignee: Mapped[str | None] = mapped_column(String(64), index=True)
    tier: Mapped[int] = mapped_column(Integer, default=1)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_activity_at: Mapped[datetime]
    # service-level timestamps (policies that fill the due dates come later)
    first_response_due_at: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    next_response_due_at: Mapped[datetime | None]
    resolution_due_at: Mapped[datetime | None]
    sla_paused_at: Mapped[datetime | None]
    sla_paused_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    solved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class TicketTag(Base):
    __tablename__ = "ticket_tags"

    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class CallRecord(Base):
    """One phone call, stored before any ticket decision so that no call is ever lost."""

    __tablename__ = "call_records"
    __table_args__ = (
        CheckConstraint(_check_in("disposition", Disposition), name="disposition"),
        Index("ix_call_records_caller_e164", "caller_e164"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    direction: Mapped[Direction] = mapped_column(EnumText(Direction))
    caller_raw: Mapped[str] = mapped_column(String(200), default="")
    caller_e164: Mapped[str | None] = mapped_column(String(20))
    caller_kind: Mapped[str] = mapped_column(String(16))
    caller_extension: Mapped[str] = mapped_column(String(16), default="")
    caller_name: Mapped[str] = mapped_column(String(200), default="")
    called: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    ivr_path: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    named_ticket: Mapped[str] = mapped_column(String(32), default="")
    subject: Mapped[str] = mapped_column(String(300), default="")
    queue: Mapped[str] = mapped_column(String(64), default="")
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    queue_wait_s: Mapped[float | None] = mapped_column(Float)
    talk_s: Mapped[float | None] = mapped_column(Float)
    hold_s: Mapped[float | None] = mapped_column(Float)
    agent: Mapped[str | None] = mapped_column(String(64))
    transfers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    recording_url: Mapped[str | None] = mapped_column(String(500))
    transcript_url: Mapped[str | None] = mapped_column(String(500))
    disposition: Mapped[Disposition] = mapped_column(EnumText(Disposition))
    created_at: Mapped[datetime]


class Message(Base):
    """One entry in a ticket's thread, with its own channel: a public reply or an internal note."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_ticket_created", "ticket_id", "created_at"),
        CheckConstraint(_check_in("channel", Channel), name="channel"),
        CheckConstraint(_check_in("direction", Direction), name="direction"),
        CheckConstraint(_check_in("author_kind", AuthorKind), name="author_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(EnumText(Channel))
    direction: Mapped[Direction] = mapped_column(EnumText(Direction))
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    author_kind: Mapped[AuthorKind] = mapped_column(EnumText(AuthorKind))
    author: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(100), default="text/plain")
    external_id: Mapped[str | None] = mapped_column(String(500), index=True)
    call_record_id: Mapped[int | None] = mapped_column(ForeignKey("call_records.id"), index=True)
    created_at: Mapped[datetime]


class Attachment(Base):
    """Metadata of a file attached to a message; the bytes live in object storage."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    storage_url: Mapped[str] = mapped_column(String(500), default="")
    inline: Mapped[bool] = mapped_column(Boolean, default=False)


class TicketLink(Base):
    """A typed, directed relation between two tickets (`source` is the one that was acted on)."""

    __tablename__ = "ticket_links"
    __table_args__ = (
        UniqueConstraint("source_id", "target_id", "kind"),
        CheckConstraint(_check_in("kind", LinkKind), name="kind"),
        CheckConstraint("source_id <> target_id", name="not_self"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[LinkKind] = mapped_column(EnumText(LinkKind))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class AuditEvent(Base):
    """Who changed what, when: an append-only history of tickets, customers and calls."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_ticket", "ticket_id", "id"),
        Index("ix_audit_events_customer", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[int | None] = mapped_column(Integer)
    customer_id: Mapped[int | None] = mapped_column(Integer)
    call_record_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
