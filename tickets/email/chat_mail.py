"""Offline-chat acknowledgements by email: the web chat's `OfflineMailer` over the mail outbox.

When nobody could take a chat, the visitor's message becomes an email ticket
(`tickets.chat.ChatRecords.offline_message`) and the chat asks this adapter to acknowledge it.
The acknowledgement is queued in the outbox in one transaction (a public system message on the
ticket carrying our Message-ID, so the customer's answer threads back, and the outbox row), then
sent by the `OutboxSender` with retries: a relay that is down delays it, never loses it. Each
ticket is acknowledged once, however often the chat asks.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tickets.email.outbox import CustomerMail
from tickets.repository import TicketRepository

__all__ = ["SmtpOfflineMailer"]


class SmtpOfflineMailer:
    """`agent_console.chat.OfflineMailer` on the records (raises `TicketsError` subclasses)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], mail: CustomerMail) -> None:
        self.sessions = sessions
        self.mail = mail

    async def acknowledge(
        self, *, ticket_id: int, number: str, to: str, name: str, text: str
    ) -> None:
        """Queue the acknowledgement of offline message ``text`` on ticket ``ticket_id``."""
        async with self.sessions.begin() as session:
            ticket = await TicketRepository(session, self.mail.clock).get(ticket_id)
            queued = await self.mail.offline_acknowledgement(
                session, ticket, to=to, name=name, text=text
            )
        if queued is not None:
            self.mail.queued()
