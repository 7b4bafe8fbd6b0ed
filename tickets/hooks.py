"""The help desk's follow-up rules, called where the facts happen: SLA clocks, identity links,
cross-channel duplicates and IVR surveys, bundled so a channel needs to know one object.

The email channel (`tickets.email.sql_desk`) calls the per-session hooks inside the transaction
that stores the message, so a ticket and its SLA clock, links and suggestions commit together.
The call feed (`tickets.call_feed`) calls :meth:`HelpDeskHooks.call_ticketed` after
`CallTickets.record_call`, in a transaction of its own; every step there is idempotent
(`ServiceLevels.start` only for a ticket without a clock, `call_recorded` overwrites the phone
service level, duplicate links are unique, a survey answered twice is kept once, the
``call.ticketed`` webhook is queued once per call id), so a call the feed hands over again
after a crash changes nothing.

The web app's help-desk service (`agent_console.service.HelpDesk`) calls the same per-session
hooks for tickets created, public messages and status changes made through the REST API. A
ticket becoming solved is mailed its email survey link (`survey_mail`, the outbound mail) when
survey links are signed (`survey_tokens`); a failure there is logged and never undoes the change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tickets.calls import CallEvent, CallOutcome, CallTicketed
from tickets.errors import SurveyAlreadyAnswered, TicketsError
from tickets.identity_linking import DUPLICATE_WINDOW, IdentityLinker, LinkOutcome
from tickets.models import CallRecord, Message, Ticket, TicketLink, TicketStatus
from tickets.phone import DEFAULT_REGION
from tickets.repository import Clock, TicketRepository, utc_now
from tickets.sla_records import BreachDetected, Escalations, ServiceLevels
from tickets.surveys import SurveyMail, Surveys, SurveyTokens, survey_link
from tickets.webhooks import WebhookEvent, enqueue

__all__ = ["HelpDeskHooks", "call_ticketed_payload"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HelpDeskHooks:
    """SLA, identity-linking, duplicate and survey hooks on the records (see the module doc)."""

    sessions: async_sessionmaker[AsyncSession]
    clock: Clock = utc_now
    escalations: Escalations | None = None
    survey_tokens: SurveyTokens | None = None
    survey_mail: SurveyMail | None = None
    public_url: str = "http://127.0.0.1:8080"  # where the mailed survey links point
    duplicate_window: timedelta = DUPLICATE_WINDOW
    default_region: str = DEFAULT_REGION

    def service_levels(self, session: AsyncSession) -> ServiceLevels:
        return ServiceLevels(session, self.clock, self.escalations)

    def linker(self, session: AsyncSession) -> IdentityLinker:
        return IdentityLinker(session, self.clock, self.default_region)

    # -- inside the caller's transaction -------------------------------------------------------

    async def ticket_created(self, session: AsyncSession, ticket: Ticket) -> list[TicketLink]:
        """A new ticket: start its SLA clock, link it to the customer's duplicates elsewhere."""
        await self.service_levels(session).start(ticket)
        return await self.linker(session).flag_duplicates(ticket, window=self.duplicate_window)

    async def message_added(self, session: AsyncSession, ticket: Ticket, message: Message) -> None:
        """A public message on a ticket: the response deadlines move."""
        await self.service_levels(session).message_added(ticket, message)

    async def status_changed(
        self, session: AsyncSession, ticket: Ticket, previous: TicketStatus
    ) -> None:
        """Call after a status change (a customer's reply reopening a pending ticket, an agent
        setting pending or solved): the SLA clock pauses, resumes or stops; solved invites the
        customer to the email survey."""
        if ticket.status == previous:
            return
        await self.service_levels(session).status_changed(ticket, previous)
        if ticket.status == TicketStatus.SOLVED:
            await self.invite_to_survey(session, ticket)

    async def invite_to_survey(self, session: AsyncSession, ticket: Ticket) -> bool:
        """Queue the survey mail of ``ticket`` (True), or nothing: surveys or mail not set up, no
        known address, already invited. A failure is logged; the caller's change stands."""
        if self.survey_tokens is None or self.survey_mail is None:
            return False
        token = Surveys(session, self.clock, self.survey_tokens).email_link_token(ticket)
        try:
            async with session.begin_nested():
                queued = await self.survey_mail.survey_invitation(
                    session, ticket, link=survey_link(self.public_url, token)
                )
        except TicketsError as err:
            log.warning("ticket %s: no survey mail (%s)", ticket.number, err)
            return False
        return queued is not None

    async def reply_on_thread(
        self, session: AsyncSession, ticket: Ticket, from_address: str
    ) -> LinkOutcome:
        """Threading proved ``from_address`` takes part in ``ticket``'s conversation."""
        return await self.linker(session).reply_on_thread(ticket, from_address)

    # -- own transactions ----------------------------------------------------------------------

    async def call_ticketed(self, ticketed: CallTicketed, event: CallEvent) -> None:
        """After `CallTickets.record_call`: SLA (start, phone level), duplicates, IVR survey,
        and the ``call.ticketed`` webhook (queued once per call).

        Raises what the database raises (the feed retries); a survey whose answers are out of
        range is logged and skipped, the call itself is already safe.
        """
        async with self.sessions.begin() as session:
            ticket = await TicketRepository(session, self.clock).get(ticketed.ticket_id)
            call = await session.get_one(CallRecord, ticketed.call_record_id)
            levels = self.service_levels(session)
            if await levels.state(ticket) is None:
                await levels.start(ticket)
            await levels.call_recorded(ticket, call)
            if ticketed.outcome is CallOutcome.NEW_TICKET:
                await self.linker(session).flag_duplicates(ticket, window=self.duplicate_window)
            surveys = Surveys(session, self.clock, self.survey_tokens)
            try:
                async with session.begin_nested():
                    await surveys.record_ivr(ticketed.call_id, event.ivr_path)
            except SurveyAlreadyAnswered:
                pass  # the same call handed over again
            except TicketsError as err:
                log.warning("call %s: survey answers not kept (%s)", ticketed.call_id, err)
            await enqueue(
                session,
                WebhookEvent.CALL_TICKETED,
                call_ticketed_payload(ticketed, ticket, call),
                clock=self.clock,
                once=ticketed.call_id,
            )

    async def check_breaches(self) -> list[BreachDetected]:
        """One pass of `ServiceLevels.check_breaches` in its own transaction."""
        async with self.sessions.begin() as session:
            return await self.service_levels(session).check_breaches()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def call_ticketed_payload(
    ticketed: CallTicketed, ticket: Ticket, call: CallRecord
) -> dict[str, Any]:
    """The ``call.ticketed`` webhook's data: the call and the ticket it became or joined."""
    return {
        "call": {
            "id": call.id,
            "call_id": call.call_id,
            "outcome": str(ticketed.outcome),
            "disposition": str(call.disposition),
            "caller_e164": call.caller_e164,
            "queue": call.queue,
            "agent": call.agent,
            "started_at": _iso(call.started_at),
            "ended_at": _iso(call.ended_at),
        },
        "ticket": {
            "id": ticket.id,
            "number": ticket.number,
            "subject": ticket.subject,
            "status": str(ticket.status),
            "channel": str(ticket.channel),
            "customer_id": ticket.customer_id,
        },
    }
