"""Customer satisfaction: IVR post-call survey, signed email survey links, chat ratings, CSAT.

Every answer is one `survey_responses` row on the ticket it rates, with the queue, agent and
channel of that contact copied in so reports need no joins. `dedup_key` makes each survey
answerable once: `ivr:<call id>`, `email:<ticket id>` (one answer per ticket), `chat:<chat id>`.

Scores are 1..5 (5 best). CSAT is the share of scored answers that are 4 or 5, the usual
definition; `resolved` is the customer's own yes/no where the survey asks it.

Email links carry a token `<payload>.<signature>`: the payload is the ticket id and an expiry
(base64url JSON), the signature HMAC-SHA256 with a secret the composition root reads from the
environment. A forged, damaged or expired token is refused (`InvalidSurveyToken`); a second
answer is refused (`SurveyAlreadyAnswered`) and changes nothing. The link is
``<public url>/survey/<token>`` (`survey_link`); it is mailed when a ticket is solved
(`tickets.hooks`, through the `SurveyMail` port the outbound mail implements) and answered on
the web app's public survey page (`agent_console.survey_pages`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tickets.calls import ivr_path_json
from tickets.errors import (
    InvalidSurveyAnswer,
    InvalidSurveyToken,
    SurveyAlreadyAnswered,
    TicketNotFound,
)
from tickets.models import Base, CallRecord, Channel, EnumText, Ticket
from tickets.repository import Clock, record_audit, utc_now

TOKEN_LIFETIME = timedelta(days=30)
MIN_SECRET_BYTES = 16
MAX_COMMENT = 4000
SATISFACTION_QUESTION = "satisfaction"  # the IVR survey flow's question names
RESOLVED_QUESTION = "resolved"


class SurveySource(StrEnum):
    IVR = "ivr"
    EMAIL = "email"
    CHAT = "chat"


class ReportBy(StrEnum):
    QUEUE = "queue"
    AGENT = "agent"
    CHANNEL = "channel"
    DAY = "day"


class SurveyResponse(Base):
    """One customer's answer to one survey about one contact."""

    __tablename__ = "survey_responses"
    __table_args__ = (
        Index("ix_survey_responses_answered_at", "answered_at"),
        CheckConstraint("score IS NULL OR (score >= 1 AND score <= 5)", name="score"),
        CheckConstraint("source IN ('ivr', 'email', 'chat')", name="source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    call_record_id: Mapped[int | None] = mapped_column(ForeignKey("call_records.id"))
    source: Mapped[SurveySource] = mapped_column(EnumText(SurveySource))
    channel: Mapped[Channel] = mapped_column(EnumText(Channel))
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    score: Mapped[int | None] = mapped_column(Integer)
    resolved: Mapped[bool | None] = mapped_column(Boolean)
    comment: Mapped[str] = mapped_column(Text, default="")
    answers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    queue: Mapped[str] = mapped_column(String(64), default="")
    agent: Mapped[str | None] = mapped_column(String(64))
    answered_at: Mapped[datetime]


@dataclass(frozen=True, slots=True)
class CsatRow:
    key: str
    responses: int
    scored: int
    satisfied: int
    average: float | None

    @property
    def csat(self) -> float | None:
        """Percent of scored answers that are 4 or 5."""
        return None if self.scored == 0 else round(100.0 * self.satisfied / self.scored, 1)


class SurveyMail(Protocol):
    """Queues the email survey invitation of a solved ticket in the caller's transaction
    (`tickets.email.outbox.CustomerMail` implements it); returns None when nothing was queued
    (no known address, a chat ticket, already invited)."""

    async def survey_invitation(
        self, session: AsyncSession, ticket: Ticket, *, link: str
    ) -> object | None: ...


def survey_link(public_url: str, token: str) -> str:
    """The customer's survey page for ``token`` under the web app's public address."""
    return f"{public_url.rstrip('/')}/survey/{token}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SurveyTokens:
    """Signs and checks email survey links."""

    def __init__(self, secret: bytes, lifetime: timedelta = TOKEN_LIFETIME) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the survey secret needs at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self.lifetime = lifetime

    def issue(self, ticket_id: int, now: datetime) -> str:
        expires = int((now + self.lifetime).timestamp())
        payload = _b64(json.dumps({"t": ticket_id, "e": expires}, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def ticket_id(self, token: str, now: datetime) -> int:
        """The ticket a genuine, unexpired token is for; `InvalidSurveyToken` otherwise."""
        payload, dot, signature = token.strip().partition(".")
        if not dot or len(token) > 512:
            raise InvalidSurveyToken("not a survey token")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise InvalidSurveyToken("the survey link was altered or not made by us")
        try:
            data = json.loads(_unb64(payload))
            ticket_id, expires = int(data["t"]), int(data["e"])
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidSurveyToken("the survey link is damaged") from err
        if now.timestamp() > expires:
            raise InvalidSurveyToken("the survey link has expired")
        return ticket_id

    def _sign(self, payload: str) -> str:
        return _b64(
            hmac.new(self._secret, payload.encode("ascii", "replace"), hashlib.sha256).digest()
        )


def _score(value: object, low: int = 1, high: int = 5) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidSurveyAnswer(f"a score is a whole number from {low} to {high}")
    return value


class Surveys:
    """Stores and reports survey answers inside the caller's transaction."""

    def __init__(
        self, session: AsyncSession, clock: Clock = utc_now, tokens: SurveyTokens | None = None
    ) -> None:
        self.session = session
        self.clock = clock
        self.tokens = tokens

    async def record_ivr(self, call_id: str, path: Iterable[object]) -> SurveyResponse | None:
        """The post-call survey answers in an IVR path (`SurveyAnswered` events or their JSON).

        The call must already be recorded (it names the ticket). Returns None when the path has
        no answered question (the caller hung up first); a question skipped is kept as None.
        """
        events = [e if isinstance(e, Mapping) else ivr_path_json([e])[0] for e in path]
        answers = {
            str(e["question"]): e.get("score") for e in events if e.get("event") == "SurveyAnswered"
        }
        if not any(v is not None for v in answers.values()):
            return None
        query = select(CallRecord).where(CallRecord.call_id == call_id)
        call = (await self.session.execute(query)).scalar_one_or_none()
        if call is None or call.ticket_id is None:
            raise TicketNotFound(f"call {call_id!r} has no ticket to attach the survey to")
        satisfaction = answers.get(SATISFACTION_QUESTION)
        resolved = answers.get(RESOLVED_QUESTION)
        return await self._store(
            ticket_id=call.ticket_id,
            call_record_id=call.id,
            source=SurveySource.IVR,
            channel=Channel.PHONE,
            dedup_key=f"ivr:{call_id}",
            score=None if satisfaction is None else _score(satisfaction),
            resolved=None if resolved is None else _score(resolved, 1, 2) == 1,
            answers=answers,
            queue=call.queue,
            agent=call.agent,
        )

    def email_link_token(self, ticket: Ticket) -> str:
        if self.tokens is None:
            raise InvalidSurveyToken("email surveys are not configured (no secret)")
        return self.tokens.issue(ticket.id, self.clock())

    async def email_survey(self, token: str) -> tuple[Ticket, SurveyResponse | None]:
        """The ticket a genuine link rates and its answer so far (None: not answered yet)."""
        if self.tokens is None:
            raise InvalidSurveyToken("email surveys are not configured (no secret)")
        ticket_id = self.tokens.ticket_id(token, self.clock())
        ticket = await self.session.get(Ticket, ticket_id)
        if ticket is None:
            raise InvalidSurveyToken("the survey link names no ticket")
        query = select(SurveyResponse).where(SurveyResponse.dedup_key == f"email:{ticket.id}")
        return ticket, (await self.session.execute(query)).scalar_one_or_none()

    async def answer_email(
        self, token: str, *, score: int, comment: str = "", resolved: bool | None = None
    ) -> SurveyResponse:
        ticket, _answered = await self.email_survey(token)
        if len(comment) > MAX_COMMENT:
            raise InvalidSurveyAnswer(f"a comment has at most {MAX_COMMENT} characters")
        return await self._store(
            ticket_id=ticket.id,
            call_record_id=None,
            source=SurveySource.EMAIL,
            channel=ticket.channel,
            dedup_key=f"email:{ticket.id}",
            score=_score(score),
            resolved=resolved,
            comment=comment,
            answers={"score": score}
            if resolved is None
            else {"score": score, "resolved": resolved},
            queue=ticket.queue,
            agent=ticket.assignee,
        )

    async def record_chat_rating(
        self,
        ticket: Ticket,
        *,
        chat_id: str,
        score: int,
        comment: str = "",
        agent: str | None = None,
    ) -> SurveyResponse:
        return await self._store(
            ticket_id=ticket.id,
            call_record_id=None,
            source=SurveySource.CHAT,
            channel=Channel.CHAT,
            dedup_key=f"chat:{chat_id}",
            score=_score(score),
            resolved=None,
            comment=comment,
            answers={"rating": score},
            queue=ticket.queue,
            agent=agent or ticket.assignee,
        )

    async def for_ticket(self, ticket: Ticket) -> list[SurveyResponse]:
        query = select(SurveyResponse).where(SurveyResponse.ticket_id == ticket.id)
        return list((await self.session.execute(query.order_by(SurveyResponse.id))).scalars())

    async def csat(self, by: ReportBy, *, since: datetime, until: datetime) -> list[CsatRow]:
        """CSAT per queue, agent, channel or UTC day for answers in [since, until)."""
        query = select(SurveyResponse).where(
            SurveyResponse.answered_at >= since, SurveyResponse.answered_at < until
        )
        groups: dict[str, list[SurveyResponse]] = {}
        for response in (await self.session.execute(query)).scalars():
            groups.setdefault(_key(response, by), []).append(response)
        rows = []
        for key in sorted(groups):
            scores = [r.score for r in groups[key] if r.score is not None]
            rows.append(
                CsatRow(
                    key=key,
                    responses=len(groups[key]),
                    scored=len(scores),
                    satisfied=sum(1 for s in scores if s >= 4),
                    average=round(sum(scores) / len(scores), 2) if scores else None,
                )
            )
        return rows

    async def count(self) -> int:
        return int((await self.session.execute(select(func.count(SurveyResponse.id)))).scalar_one())

    async def _store(self, *, dedup_key: str, comment: str = "", **fields: Any) -> SurveyResponse:
        query = select(SurveyResponse.id).where(SurveyResponse.dedup_key == dedup_key)
        if (await self.session.execute(query)).first() is not None:
            raise SurveyAlreadyAnswered(f"survey {dedup_key.split(':')[0]} already answered")
        response = SurveyResponse(
            dedup_key=dedup_key,
            comment=comment[:MAX_COMMENT],
            answered_at=self.clock(),
            **fields,
        )
        try:
            async with self.session.begin_nested():
                self.session.add(response)
                await self.session.flush()
        except IntegrityError as err:  # a concurrent answer won the race
            raise SurveyAlreadyAnswered("survey already answered") from err
        record_audit(
            self.session,
            at=self.clock(),
            actor=f"customer:{fields['source']}",
            action="survey.answered",
            ticket_id=fields["ticket_id"],
            data={"source": str(fields["source"]), "score": fields["score"]},
        )
        return response


def _key(response: SurveyResponse, by: ReportBy) -> str:
    if by == ReportBy.QUEUE:
        return response.queue
    if by == ReportBy.AGENT:
        return response.agent or ""
    if by == ReportBy.CHANNEL:
        return str(response.channel)
    return response.answered_at.date().isoformat()
